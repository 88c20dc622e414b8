import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import { redactUrlCredentials } from '../src/access.ts';
import { FleetUserSlots, USER_SLOT_TIMEOUT_MS, USER_SLOT_TTL_MS } from '../src/fleet/user-slots.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import { redisOptions } from '../src/redis-connection.ts';

/** What /debug shows (`fleet_limits`) and the metrics read. */
export interface FleetLimitsInfo {
  /** websocket.global_limits */
  enabled: boolean;
  /** This replica's id in the fleet's keys (`<replica>:<client>` members); null when off. */
  replica: string | null;
  /** ms a slot lives in Redis without a refresh. */
  ttlMs: number;
  /** The connection's state (ioredis status: `ready` when up); null when off. */
  redis: string | null;
  /** Slots this replica holds for its open connections (and upgrades under way). */
  held: number;
  /** Upgrades the fleet had room for. */
  admitted: number;
  /** Upgrades refused: the user is at the limit on the replicas together. */
  refused: number;
  /** Upgrades admitted on this replica's count alone: Redis did not answer within USER_SLOT_TIMEOUT_MS. */
  failOpen: number;
  released: number;
  /** Releases Redis did not take (the slot ages out with the ttl). */
  releaseFailed: number;
  refreshes: number;
  refreshFailed: number;
  lastError: string | null;
}

declare module 'fastify' {
  interface FastifyInstance {
    fleetLimits: {
      /** websocket.global_limits: `admit` asks Redis; off, it is never called. */
      readonly enabled: boolean;
      /**
       * The fleet's part of websocket.max_clients_per_user for an upgrade by `userId`, after the replica's own
       * check: takes one of the user's `limit` slots across the fleet, held until the socket leaves the hub or the
       * upgrade fails. False: the user is at the limit (on the replicas together, or on this one
       * counting upgrades still under way). Redis away or slow: true when this replica's count allows (fail open).
       */
      admit(request: FastifyRequest, userId: string, limit: number): Promise<boolean>;
      info(): FleetLimitsInfo;
    };
  }
}

/** One upgrade's slot, from the access check until its socket leaves the hub (or the upgrade fails). */
interface Claim {
  userId: string;
  /** The slot's client id on this replica (the member is `<replica>:<client>`). */
  client: number;
  /** Past the access check, not yet in the hub: counted in `upgrading`. */
  upgrading: boolean;
  released: boolean;
}

const OFF_INFO: FleetLimitsInfo = {
  enabled: false,
  replica: null,
  ttlMs: USER_SLOT_TTL_MS,
  redis: null,
  held: 0,
  admitted: 0,
  refused: 0,
  failOpen: 0,
  released: 0,
  releaseFailed: 0,
  refreshes: 0,
  refreshFailed: 0,
  lastError: null,
};

/**
 * websocket.global_limits: websocket.max_clients_per_user across every replica of the fleet. Each upgrade takes a
 * slot of its user in Redis (src/fleet/user-slots.ts, keys `<leader.key>:clients:<user>`) before the 101 and gives
 * it back when its socket leaves the hub, or when the upgrade fails. Off, nothing connects to Redis.
 */
export default fp(
  async (fastify) => {
    const { websocket, leader, redis: redisConfig } = fastify.config;
    if (!websocket.global_limits) {
      fastify.decorate('fleetLimits', {
        enabled: false,
        admit: async () => true,
        info: () => ({ ...OFF_INFO }),
      });
      return;
    }
    const { hub, log } = fastify;
    // The replica's one id, as /debug `leader.self` and the lease name it.
    const replica = fastify.leader.self;
    // Of its own, failing fast: no offline queue, so an upgrade never waits for a Redis that is away.
    const redis = new Redis(
      redisConfig.url,
      redisOptions(redisConfig, {
        connectionName: 'dashboard-server:fleet-limits',
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
      }),
    );
    // An outage shows as fail-open admissions and failed refreshes, logged below; not once per reconnect attempt.
    redis.on('error', () => {});
    const throttle = new LogThrottle(1000);
    const where = { url: redactUrlCredentials(redisConfig.url), replica };
    const slots = new FleetUserSlots({
      redis,
      prefix: leader.key,
      replica,
      onRefreshFailed: (error) => {
        const suppressed = throttle.allow('refresh');
        if (suppressed === undefined) return;
        log.warn(
          { ...where, suppressed, err: error.message },
          "fleet limits: refreshing this replica's slots failed; they age out if it goes on",
        );
      },
    });

    /** Upgrades per user past the checks and not yet in the hub (whose count they are not in yet). */
    const upgrading = new Map<string, number>();
    const claimsByRequest = new WeakMap<IncomingMessage, Claim>();
    const claimsBySocket = new WeakMap<object, Claim>();
    let nextClient = 1;

    function endUpgrade(claim: Claim): void {
      if (!claim.upgrading) return;
      claim.upgrading = false;
      const remaining = (upgrading.get(claim.userId) ?? 1) - 1;
      if (remaining > 0) upgrading.set(claim.userId, remaining);
      else upgrading.delete(claim.userId);
    }

    function release(claim: Claim): void {
      endUpgrade(claim);
      if (claim.released) return;
      claim.released = true;
      void slots.release(claim.client);
    }

    async function admit(request: FastifyRequest, userId: string, limit: number): Promise<boolean> {
      // The wait for Redis below lets this user's other upgrades reach this point before this one is in the hub's
      // count: the ones under way count here, or a Redis that fails would let them all through at once.
      if (hub.clientCount(userId) + (upgrading.get(userId) ?? 0) >= limit) return false;
      const claim: Claim = { userId, client: nextClient++, upgrading: true, released: false };
      upgrading.set(userId, (upgrading.get(userId) ?? 0) + 1);
      claimsByRequest.set(request.raw, claim);
      // Whatever happens to the upgrade, its TCP socket closes in the end (under injectWS there is none: the
      // onResponse hook below and the hub's `left` cover it). Listened to before the wait: it may close during it.
      (request.raw.socket as Socket | undefined)?.once('close', () => release(claim));
      const outcome = await slots.acquire(userId, claim.client, limit);
      if (outcome === 'refused') {
        release(claim);
        return false;
      }
      if (outcome === 'unavailable') {
        const suppressed = throttle.allow('fail_open');
        if (suppressed !== undefined) {
          log.warn(
            { ...where, suppressed, err: slots.lastError },
            "fleet limits: redis did not answer; upgrade admitted on this replica's websocket.max_clients_per_user",
          );
        }
      }
      return true;
    }

    // The upgrade completed: from here the hub counts the socket, and its leaving gives the slot back. Emitted by
    // @fastify/websocket just before the route's handler, which hands the socket to the hub synchronously.
    fastify.websocketServer.on('connection', (socket: object, request: IncomingMessage) => {
      const claim = claimsByRequest.get(request);
      if (claim === undefined) return;
      endUpgrade(claim);
      claimsBySocket.set(socket, claim);
    });
    hub.observe({
      left: (client) => {
        const claim = claimsBySocket.get(client.socket);
        if (claim) release(claim);
      },
    });
    // An upgrade refused after the access check (a later check, a bad query): the reply is sent, no socket opened.
    fastify.addHook('onResponse', async (request) => {
      const claim = claimsByRequest.get(request.raw);
      if (claim?.upgrading) release(claim);
    });

    fastify.decorate('fleetLimits', {
      enabled: true,
      admit,
      info: (): FleetLimitsInfo => {
        const { unavailable, ...stats } = slots.stats;
        return {
          enabled: true,
          replica,
          ttlMs: slots.ttl,
          redis: redis.status,
          ...stats,
          failOpen: unavailable,
          lastError: slots.lastError ?? null,
        };
      },
    });
    fastify.addHook('onReady', async () => {
      slots.start();
      // A replica starts counting with the fleet when Redis answers at once; it does not wait longer for one that
      // is away: meanwhile upgrades are admitted on this replica's count (and logged), and it connects when it can.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        redis.connect().catch(() => {}),
        new Promise((resolve) => {
          timer = setTimeout(resolve, USER_SLOT_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    });
    // After the hub's drain (preClose), which closed every socket and so gave their slots back.
    fastify.addHook('onClose', async () => {
      await slots.stop();
      redis.disconnect();
    });
  },
  { name: 'fleet-limits', dependencies: ['config', 'hub', 'leader'] },
);
