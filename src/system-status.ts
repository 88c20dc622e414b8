import type { SourceName } from './backends.ts';
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

/**
 * The one writer of the `system` topic (docs/protocol.md): `{epoch, started_at, redis: {status, since},
 * nats?: {status, since}, history?: {status, since}, sources: {NAME: …}}`. The Redis side, the NATS side (when configured) and the poller
 * report their part; this rewrites the whole record.
 */
export class SystemStatus {
  private readonly state: StateStore;
  private readonly startedAt: string;
  private redis: { status: RedisStatus; since: string };
  private nats: { status: NatsStatus; since: string } | undefined;
  private history: { status: HistoryStatus; since: string } | undefined;
  private readonly sources = new Map<SourceName, JsonObject>();

  constructor(state: StateStore) {
    this.state = state;
    this.startedAt = new Date(state.startedAt).toISOString();
    this.redis = { status: 'connecting', since: this.startedAt };
    this.publish();
  }

  /** The Redis subscriber connection's status, and since when (ISO time). */
  reportRedis(status: RedisStatus, since: string): void {
    this.redis = { status, since };
    this.publish();
  }

  /** The NATS connection's status, and since when (ISO time); `system.nats` exists once reported. */
  reportNats(status: NatsStatus, since: string): void {
    this.nats = { status, since };
    this.publish();
  }

  /** The history writer's status (`system.history`, once reported: only when history is configured). */
  reportHistory(status: HistoryStatus, since: string): void {
    this.history = { status, since };
    this.publish();
  }

  /** One backend's poll status (`system.sources.NAME`). */
  reportSource(name: SourceName, status: SourceStatus): void {
    this.sources.set(name, statusRecord(status));
    this.publish();
  }

  private publish(): void {
    const record: JsonObject = {
      epoch: this.state.epoch,
      started_at: this.startedAt,
      redis: { ...this.redis },
    };
    if (this.nats) record.nats = { ...this.nats };
    if (this.history) record.history = { ...this.history };
    if (this.sources.size > 0) record.sources = Object.fromEntries(this.sources);
    this.state.set('system', SINGLE, record);
  }
}
