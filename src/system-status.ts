import type { SourceName } from './backends.ts';
import type { LeaderInfo } from './leader/lease.ts';
import type { JsonObject } from './merge-patch.ts';
import { type SourceStatus, statusRecord } from './poller.ts';
import { SINGLE, type StateStore } from './state.ts';

/**
 * `stalled`: the connections are open but Redis does not answer (no PING reply within
 * `redis.health_check_timeout`: a frozen process or host, a partition that has not closed the sockets yet).
 */
export type RedisStatus = 'connecting' | 'up' | 'stalled' | 'down';
/** The NATS connection: `down` from a lost connection until the client has re-established it. */
export type NatsStatus = 'connecting' | 'up' | 'down';
/** The history writer: `down` while PostgreSQL refuses writes (rows stay queued). */
export type HistoryStatus = 'connecting' | 'up' | 'down';

/** Each connection `system` reports, and the statuses it goes through. */
export interface ConnectionStatuses {
  redis: RedisStatus;
  nats: NatsStatus;
  history: HistoryStatus;
}
export type ConnectionName = keyof ConnectionStatuses;

/**
 * The one writer of the `system` topic (docs/protocol.md): `{epoch, started_at, redis: {status, since},
 * nats?: {status, since}, history?: {status, since}, sources: {NAME: …}, leader: {holder?, is_leader, lease_age?,
 * takeovers}}`. The Redis side, the NATS side and the
 * history writer (each when configured) and the poller report their part; this rewrites the whole record.
 */
export class SystemStatus {
  private readonly state: StateStore;
  private readonly startedAt: string;
  /** Redis from the start; NATS and history once they report (only when configured). */
  private readonly connections = new Map<ConnectionName, { status: string; since: string }>();
  private readonly sources = new Map<SourceName, JsonObject>();
  private leader: LeaderInfo | undefined;

  constructor(state: StateStore) {
    this.state = state;
    this.startedAt = new Date(state.startedAt).toISOString();
    this.connections.set('redis', { status: 'connecting', since: this.startedAt });
    this.publish();
  }

  /** A connection's status, and since when (ISO time): `system.<name>`. */
  reportConnection<Name extends ConnectionName>(
    name: Name,
    status: ConnectionStatuses[Name],
    since: string,
  ): void {
    this.connections.set(name, { status, since });
    this.publish();
  }

  /** One backend's poll status (`system.sources.NAME`). */
  reportSource(name: SourceName, status: SourceStatus): void {
    this.sources.set(name, statusRecord(status));
    this.publish();
  }

  /** The fleet's lease as this replica sees it (`system.leader`). */
  reportLeader(info: LeaderInfo): void {
    // Reported at every look at the lease (a third of it); a leader's record rarely changes: no write, no diff.
    const before = this.leader;
    if (
      before &&
      before.holder === info.holder &&
      before.is_leader === info.is_leader &&
      before.lease_age === info.lease_age &&
      before.takeovers === info.takeovers
    )
      return;
    this.leader = { ...info };
    this.publish();
  }

  private publish(): void {
    const record: JsonObject = {
      epoch: this.state.epoch,
      started_at: this.startedAt,
    };
    for (const [name, connection] of this.connections) record[name] = { ...connection };
    if (this.sources.size > 0) record.sources = Object.fromEntries(this.sources);
    if (this.leader) {
      // Null fields are left out, as for the sources: a merge patch cannot carry a null value.
      const { holder, is_leader, lease_age, takeovers } = this.leader;
      const leader: JsonObject = { is_leader, takeovers };
      if (holder !== null) leader.holder = holder;
      if (lease_age !== null) leader.lease_age = lease_age;
      record.leader = leader;
    }
    this.state.set('system', SINGLE, record);
  }
}
