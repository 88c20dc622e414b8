import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { SourceName } from '../src/backends.ts';
import { type LeaderInfo, LeaderLease } from '../src/leader/lease.ts';
import {
  type DataEnvelope,
  type Envelope,
  fieldOf,
  MAX_ENVELOPE_BYTES,
  parseEnvelope,
  RelayOrder,
  type RelayOutcome,
  RelaySequence,
  type StatusEnvelope,
} from '../src/leader/relay.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import type { Json } from '../src/merge-patch.ts';
import type { SourceStatus } from '../src/poller.ts';
import { redisOptions } from '../src/redis-connection.ts';

export type { LeaderInfo };

/** What the replica does with relayed polls (the poller: parse the answers as the leader did, apply them). */
export interface RelayReceiver {
  /** Applies it; false if this replica does not poll that backend (nothing applied). */
  data(envelope: DataEnvelope): boolean;
  status(envelope: StatusEnvelope): boolean;
}

/** /debug's `leader`: the lease, this replica's id and the relay's counters. */
export interface LeaderDebug extends LeaderInfo {
  self: string;
  isolated: boolean;
  term: number;
  relay: { published: number; publish_errors: number; received: Record<RelayOutcome, number> };
}

declare module 'fastify' {
  interface FastifyInstance {
    leader: {
      /** This replica's id: `host:pid:random`, the lease's value while it leads. */
      readonly self: string;
      readonly isLeader: boolean;
      /** It led when the stop began: what it still holds (history's last rows) is its to write. */
      readonly ledAtStop: boolean;
      /** No reply from Redis for a lease: the replica polls for its own clients (the poller). */
      readonly isolated: boolean;
      info(): LeaderInfo;
      debug(): LeaderDebug;
      /** `change` (isLeader), `isolated` (boolean) and `info` (LeaderInfo): the lease's own events. */
      readonly events: EventEmitter;
      /** On the leader: relays a poll's answers to the other replicas (nothing elsewhere). */
      publishData(source: SourceName, startedAt: number, answers: Json[]): void;
      /** On the leader: relays a source's status. */
      publishStatus(source: SourceName, status: SourceStatus): void;
      /** Sets what is done with relayed polls on a replica that does not lead; reads the kept copies. */
      receive(receiver: RelayReceiver): void;
      /** Reads the kept copies now (a replica that does not lead asked for a refresh). */
      resync(): void;
    };
  }
}

/** How long the kept copies outlive the last poll relayed: a fleet gone for longer leaves nothing to apply. */
const COPIES_TTL_MS = 3_600_000;

/**
 * One replica of the fleet leads (src/leader/lease.ts): it polls the backends and writes history, and relays each
 * poll on `<leader.key>:polls`; the others apply what it relays (src/leader/relay.ts). A lone hub leads. Two Redis
 * connections of its own: commands without an offline queue (a lease command must fail at once when Redis is
 * away), and a subscriber.
 */
export default fp(
  async (fastify) => {
    const { leader: config, redis: redisConfig } = fastify.config;
    const { log, systemStatus } = fastify;
    const self = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    const key = config.key;
    const channel = `${key}:polls`;
    const releasedChannel = `${key}:released`;
    const copiesKey = `${key}:sections`;
    const commands = new Redis(
      redisConfig.url,
      redisOptions(redisConfig, {
        connectionName: 'dashboard-server:leader',
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
      }),
    );
    const subscriber = new Redis(
      redisConfig.url,
      redisOptions(redisConfig, { connectionName: 'dashboard-server:relay' }),
    );
    // Errors are the lease's and the relay's to report (a lost lease is logged; an outage by redis-ingest).
    commands.on('error', () => {});
    subscriber.on('error', () => {});
    const lease = new LeaderLease({ redis: commands, key, holder: self, lease: config.lease, logger: log });
    const sequence = new RelaySequence();
    const order = new RelayOrder();
    const throttle = new LogThrottle(1000);
    const stats: LeaderDebug['relay'] = {
      published: 0,
      publish_errors: 0,
      received: { applied: 0, stale: 0, invalid: 0, resync: 0 },
    };
    let receiver: RelayReceiver | undefined;
    let resyncing: Promise<void> | undefined;

    lease.on('info', (info: LeaderInfo) => systemStatus.reportLeader(info));
    commands.on('close', () => lease.lost('connection to Redis lost'));
    commands.on('ready', () => lease.poke());

    function publish(envelope: Omit<DataEnvelope, 'term' | 'seq'> | Omit<StatusEnvelope, 'term' | 'seq'>) {
      if (!lease.isLeader) return;
      const text = JSON.stringify({ ...envelope, ...sequence.next(lease.term) });
      if (Buffer.byteLength(text) > MAX_ENVELOPE_BYTES) {
        // The replicas would drop it: they keep the last copy and show the source's status, which still relays.
        stats.publish_errors++;
        if (throttle.allow('too-large') !== undefined)
          log.warn(
            { source: envelope.source, max_bytes: MAX_ENVELOPE_BYTES },
            'leader: a poll too large to relay; the other replicas keep the previous one',
          );
        return;
      }
      commands
        .multi()
        .hset(copiesKey, fieldOf(envelope), text)
        .pexpire(copiesKey, Math.max(COPIES_TTL_MS, 3 * config.lease))
        .publish(channel, text)
        .exec()
        .then(
          () => {
            stats.published++;
          },
          (error: Error) => {
            stats.publish_errors++;
            if (throttle.allow('publish') !== undefined)
              log.warn({ err: error.message, source: envelope.source }, 'leader: relaying a poll failed');
          },
        );
    }

    /** One envelope from the channel or the copies; nothing in it may throw out of here. */
    function take(payload: Buffer | string, fromCopy: boolean): boolean {
      let envelope: Envelope;
      try {
        envelope = parseEnvelope(payload);
      } catch (error) {
        dropped(error);
        return false;
      }
      // The leader's own, or a deposed one's while this replica leads: it polls itself.
      if (lease.isLeader || envelope.holder === self) return false;
      const { apply, gap } = order.accept(envelope, { fromCopy, holder: lease.info.holder });
      if (apply && receiver) {
        try {
          const applied = envelope.kind === 'data' ? receiver.data(envelope) : receiver.status(envelope);
          if (applied) {
            order.markApplied(envelope);
            stats.received.applied++;
          } else stats.received.stale++;
        } catch (error) {
          dropped(error);
        }
      } else if (!apply) stats.received.stale++;
      return gap;
    }

    /** An envelope refused (RelayError) or whose answers the parsers or ingest refused: counted, logged. */
    function dropped(error: unknown): void {
      stats.received.invalid++;
      const suppressed = throttle.allow('invalid');
      if (suppressed === undefined) return;
      const message = error instanceof Error ? error.message : String(error);
      log.warn({ err: message, suppressed }, 'leader: relayed poll dropped');
    }

    /** Reads the kept copies and applies those newer than what was applied. One read at a time. */
    function resync(): void {
      // Before the connection is up there is nothing to read: its `ready` (the subscriber's) reads the copies.
      if (resyncing || lease.isLeader || !receiver || commands.status !== 'ready') return;
      stats.received.resync++;
      resyncing = commands
        .hgetallBuffer(copiesKey)
        .then((copies) => {
          for (const payload of Object.values(copies)) take(payload, true);
        })
        .catch((error: Error) => {
          if (throttle.allow('resync') !== undefined)
            log.warn({ err: error.message }, 'leader: reading the relayed copies failed');
        })
        .finally(() => {
          resyncing = undefined;
        });
    }

    subscriber.on('messageBuffer', (name: Buffer, payload: Buffer) => {
      if (name.toString() === releasedChannel) {
        lease.poke();
        return;
      }
      if (take(payload, false)) resync();
    });
    let subscribedOnce = false;
    commands.on('ready', () => resync());
    subscriber.on('ready', () => {
      // ioredis resubscribes on its own after a reconnect; what was published meanwhile is in the copies.
      const subscribed = subscribedOnce
        ? Promise.resolve()
        : subscriber.subscribe(channel, releasedChannel).then(() => {
            subscribedOnce = true;
          });
      subscribed.then(resync, (error: Error) =>
        log.warn({ err: error.message }, 'leader: subscribing to the relay failed'),
      );
    });

    fastify.decorate('leader', {
      self,
      get isLeader() {
        return lease.isLeader;
      },
      get isolated() {
        return lease.isolated;
      },
      get ledAtStop() {
        return lease.ledAtStop;
      },
      info: () => lease.info,
      debug: () => ({ ...lease.info, self, isolated: lease.isolated, term: lease.term, relay: stats }),
      events: lease,
      publishData(source: SourceName, startedAt: number, answers: Json[]) {
        publish({ v: 1, holder: self, source, kind: 'data', started_at: startedAt, answers });
      },
      publishStatus(source: SourceName, status: SourceStatus) {
        publish({ v: 1, holder: self, source, kind: 'status', status });
      },
      receive(next: RelayReceiver) {
        receiver = next;
        resync();
      },
      resync,
    });

    fastify.addHook('onReady', async () => {
      systemStatus.reportLeader(lease.info);
      lease.start();
      commands.connect().catch(() => {});
      subscriber.connect().catch(() => {});
    });
    // At the start of a stop: this replica stops polling at once (stop() steps down before it awaits anything) and
    // gives the lease up so another takes over while this one's clients leave, fed by the relay meanwhile. Not
    // awaited here: the hub's drain (its own preClose, registered later) must not wait for a Redis round trip.
    let released: Promise<void> = Promise.resolve();
    fastify.addHook('preClose', async () => {
      const wasLeader = lease.isLeader;
      released = lease.stop().then(async () => {
        if (wasLeader) await commands.publish(releasedChannel, self).catch(() => {});
      });
    });
    fastify.addHook('onClose', async () => {
      await released;
      commands.disconnect();
      subscriber.disconnect();
    });
  },
  { name: 'leader', dependencies: ['config', 'state'] },
);
