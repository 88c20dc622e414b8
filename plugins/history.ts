import fp from 'fastify-plugin';
import CircuitBreaker from 'opossum';
import postgres, { type Sql } from 'postgres';
import { redactUrlCredentials } from '../src/access.ts';
import { HandoverWindow } from '../src/history/handover.ts';
import { HistoryQueue } from '../src/history/queue.ts';
import { HistoryRecorder } from '../src/history/recorder.ts';
import { HISTORY_KINDS, type HistoryKind, type HistoryRow, perKind } from '../src/history/rows.ts';
import { dayOf, dropPartitionsBefore, ensurePartition, insertRows, migrate } from '../src/history/store.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import type { HistoryStatus } from '../src/system-status.ts';
import { failSpan, type Span, withSpan } from '../src/tracing.ts';

/** What /debug and the metrics read of the history writer. */
export interface HistoryInfo {
  /** `history.database_url` is set. */
  enabled: boolean;
  /** `off` when not configured; `down` while PostgreSQL refuses writes (the breaker is open or a write failed). */
  status: HistoryStatus | 'off';
  since: string;
  /** Rows written, by kind (dashboard_history_rows_written_total). */
  written: Record<HistoryKind, number>;
  /** Rows dropped (queue full, older than the retention or a day ahead), by kind (dashboard_history_dropped_total). */
  dropped: Record<HistoryKind, number>;
  /** Failed writes (dashboard_history_errors_total). */
  errors: number;
  lastError?: string;
  /** When the last write succeeded. */
  lastFlush?: string;
  breaker: 'closed' | 'open' | 'half_open';
}

declare module 'fastify' {
  interface FastifyInstance {
    history: {
      readonly info: HistoryInfo;
      /** Rows waiting, by kind. */
      queued(): Record<HistoryKind, number>;
      /** The PostgreSQL client for the routes' queries; undefined when history is off. */
      readonly sql: Sql | undefined;
      /** Adds an observer of each write (the metrics plugin: its duration). */
      observe(observer: (seconds: number) => void): () => void;
    };
  }
}

const DAY_MS = 86_400_000;
/** Retention and partitions ahead, checked this often (and at start). */
const MAINTENANCE_MS = 3_600_000;

/**
 * History on PostgreSQL, on when `history.database_url` is set: the recorder turns state writes into rows
 * (src/history/recorder.ts), queued in memory (bounded per kind); every `history.flush_interval` one multi-row insert
 * per table writes them, behind a circuit breaker. The live path never waits for PostgreSQL: a write is a timer's
 * job, and an outage only grows the queue (its oldest rows dropped past the bound). `/ready` does not depend on it.
 */
export default fp(
  async (fastify) => {
    const { history: config } = fastify.config;
    const { state, systemStatus, log } = fastify;
    const queue = new HistoryQueue(config.queue_max_rows);
    const info: HistoryInfo = {
      enabled: config.database_url !== undefined,
      status: config.database_url === undefined ? 'off' : 'connecting',
      since: new Date().toISOString(),
      written: perKind(() => 0),
      dropped: queue.dropped,
      errors: 0,
      breaker: 'closed',
    };
    const observers = new Set<(seconds: number) => void>();
    const url = config.database_url;
    const sql =
      url === undefined
        ? undefined
        : postgres(url, {
            max: 4,
            connect_timeout: 5,
            idle_timeout: 60,
            onnotice: () => {},
            // A statement that hangs (a lock, a stalled server) fails after this: a write is never stuck for long.
            connection: { application_name: 'dashboard-server', statement_timeout: 30_000 },
          });
    fastify.decorate('history', {
      info,
      sql,
      queued: () => perKind((kind) => queue.length(kind)),
      observe(observer: (seconds: number) => void) {
        observers.add(observer);
        return () => observers.delete(observer);
      },
    });
    if (sql === undefined || url === undefined) return;

    const recorder = new HistoryRecorder(queue);
    // A lease and two flushes: the seconds a dead leader may not have written before another takes over.
    const handover = new HandoverWindow(
      Math.ceil((fastify.config.leader.lease + 2 * config.flush_interval) / config.flush_interval) + 1,
    );
    fastify.leader.events.on('change', () => handover.reset(queue));
    const errorLog = new LogThrottle(10_000);
    /** Day partitions known to exist, by kind. */
    const partitions = new Map<HistoryKind, Set<number>>(HISTORY_KINDS.map((kind) => [kind, new Set()]));
    let migrated = false;

    function setStatus(status: HistoryStatus, error?: unknown): void {
      if (error !== undefined) info.lastError = error instanceof Error ? error.message : String(error);
      if (info.status === status) return;
      info.status = status;
      info.since = new Date().toISOString();
      systemStatus.reportConnection('history', status, info.since);
      if (status === 'up') {
        delete info.lastError;
        log.info({ url: redactUrlCredentials(url!) }, 'history: writing to PostgreSQL');
      } else
        log.warn(
          { url: redactUrlCredentials(url!), err: info.lastError },
          'history: PostgreSQL unavailable; rows are queued',
        );
    }

    /** One write: migrations first if not done yet, then each kind's queued rows, oldest first. */
    async function writeQueued(): Promise<void> {
      if (!migrated) {
        const applied = await migrate(sql!);
        if (applied.length > 0) log.info({ applied }, 'history: migrations applied');
        migrated = true;
        await maintain();
      }
      if (!writes()) return;
      // A row outside the retention, or more than a day ahead (a publisher's clock, or a hostile one creating a
      // partition per day), is dropped: partitions are only ever made for the days history keeps.
      const oldest = Date.now() - config.retention;
      const latest = Date.now() + DAY_MS;
      for (const kind of HISTORY_KINDS) {
        const rows = queue.take(kind, queue.length(kind));
        if (rows.length === 0) continue;
        const kept = rows.filter((row) => row.ts.getTime() >= oldest && row.ts.getTime() <= latest);
        info.dropped[kind] += rows.length - kept.length;
        try {
          await createPartitions(kind, kept);
          await insertRows(sql!, kind, kept);
        } catch (error) {
          queue.restore(kind, kept);
          throw error;
        }
        info.written[kind] += kept.length;
      }
    }

    async function createPartitions(kind: HistoryKind, rows: HistoryRow[]): Promise<void> {
      const known = partitions.get(kind)!;
      for (const day of new Set(rows.map((row) => dayOf(row.ts.getTime())))) {
        if (known.has(day)) continue;
        await ensurePartition(sql!, kind, day);
        known.add(day);
      }
    }

    /** Today's and tomorrow's partitions, and the retention: partitions that ended before it are dropped. */
    async function maintain(): Promise<void> {
      const today = dayOf(Date.now());
      for (const kind of HISTORY_KINDS) {
        await createPartitions(kind, [{ ts: new Date(today) }, { ts: new Date(today + DAY_MS) }]);
      }
      const dropped = await dropPartitionsBefore(sql!, Date.now() - config.retention);
      if (dropped.length > 0) {
        for (const known of partitions.values()) known.clear();
        log.info({ dropped }, 'history: partitions past history.retention dropped');
      }
    }

    const breaker = new CircuitBreaker(writeQueued, {
      // No timer of the breaker's own: it would stop waiting while the write goes on, and the next write would start
      // beside it. The statements end by themselves (statement_timeout, connect_timeout).
      timeout: false,
      errorThresholdPercentage: config.breaker.error_threshold_percentage,
      volumeThreshold: config.breaker.volume_threshold,
      resetTimeout: config.breaker.reset_timeout,
      rollingCountTimeout: config.breaker.rolling_window,
      rollingCountBuckets: 10,
    });
    breaker.on('open', () => {
      info.breaker = 'open';
    });
    breaker.on('halfOpen', () => {
      info.breaker = 'half_open';
    });
    breaker.on('close', () => {
      info.breaker = 'closed';
    });

    let writing = false;
    let stopping = false;
    /** The writer: the leader, or the replica that led until its stop began, for its last rows. */
    const writes = () => fastify.leader.isLeader || (stopping && fastify.leader.ledAtStop);
    const totalWritten = () => HISTORY_KINDS.reduce((sum, kind) => sum + info.written[kind], 0);
    async function flush(): Promise<void> {
      if (writing) return;
      recorder.closeSeconds();
      // One writer for the fleet, the leader. A replica that does not lead keeps the last seconds of rows for when
      // it takes over, and reaches PostgreSQL once (the migrations), so that system.history says whether it can.
      if (!writes()) {
        handover.trim(queue);
        if (migrated) return;
      }
      // Nothing to write touches nothing: an empty flush counted as a success would keep the breaker closed long
      // into an outage (half its rolling window of quiet seconds against the failures).
      if (migrated && queue.total === 0) return;
      writing = true;
      const attributes = { 'dashboard.rows': queue.total, 'dashboard.breaker': info.breaker };
      try {
        await withSpan('history.flush', attributes, (span) => write(span), { root: true });
      } finally {
        writing = false;
      }
    }

    /** One write of what is queued, through the breaker; its span says how many rows were written. */
    async function write(span: Span | undefined): Promise<void> {
      const started = performance.now();
      const writtenBefore = totalWritten();
      try {
        await breaker.fire();
        span?.setAttributes({
          'dashboard.outcome': 'written',
          'dashboard.rows_written': totalWritten() - writtenBefore,
        });
        info.lastFlush = new Date().toISOString();
        setStatus('up');
        const seconds = (performance.now() - started) / 1000;
        for (const observer of observers) observer(seconds);
      } catch (error) {
        // An open breaker refuses without trying (EOPENBREAKER): the rows stay queued until a probe succeeds. A
        // write that failed counts even when its failure is what opened the breaker (breaker.opened is true by now).
        const refused = (error as { code?: string }).code === 'EOPENBREAKER';
        span?.setAttribute('dashboard.outcome', refused ? 'refused' : 'failed');
        if (!refused) {
          info.errors++;
          failSpan(span, error);
        }
        setStatus('down', refused ? (info.lastError ?? error) : error);
        const suppressed = errorLog.allow('write');
        if (suppressed !== undefined && !refused) {
          log.warn({ err: (error as Error).message, suppressed }, 'history: write failed; rows stay queued');
        }
      }
    }

    const stopObserving = state.observeWrites((topic, key, value, before) => {
      // Account samples are timed by this replica's clock: only the leader's are kept (the other rows are timed and
      // keyed by the data itself, the same on every replica).
      if (topic === 'account' && !fastify.leader.isLeader) return;
      // Called inside the state's write: a failure here must not reach ingest (the write is done).
      try {
        recorder.written(topic, key, value, before);
      } catch (error) {
        info.errors++;
        if (errorLog.allow('record') !== undefined)
          log.error({ err: error }, 'history: recording a write failed');
      }
    });
    const timers: NodeJS.Timeout[] = [];
    fastify.addHook('onReady', async () => {
      systemStatus.reportConnection('history', 'connecting', info.since);
      timers.push(setInterval(() => void flush(), config.flush_interval));
      timers.push(
        setInterval(() => {
          if (fastify.leader.isLeader) recorder.sampleAccount(state.get('account'));
        }, config.account_interval),
      );
      timers.push(
        setInterval(() => {
          if (migrated && !breaker.opened && writes())
            void maintain().catch((error: Error) => setStatus('down', error));
        }, MAINTENANCE_MS),
      );
      for (const timer of timers) timer.unref();
      void flush();
    });
    fastify.addHook('onClose', async () => {
      stopObserving();
      for (const timer of timers) clearInterval(timer);
      stopping = true;
      // What is queued is written once more if PostgreSQL answers; a stop never waits on it for long.
      if (info.status === 'up')
        await Promise.race([flush(), new Promise((resolve) => setTimeout(resolve, 1000))]);
      breaker.shutdown();
      await sql.end({ timeout: 1 });
    });
  },
  { name: 'history', dependencies: ['config', 'state', 'leader'] },
);
