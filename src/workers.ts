/**
 * The cluster primary for `server.workers` > 1: src/server.ts runs this instead of the app. It forks the workers
 * (each runs src/server.ts again, a full replica with its own clients and connections; Node's round-robin hands
 * them the port's connections), starts another when one dies, and stops them all on SIGTERM or SIGINT. Pure Node:
 * the primary loads neither Fastify nor Redis, so there is little in it that can fail.
 */
import cluster, { type Worker } from 'node:cluster';
import { hostname } from 'node:os';

/** The first wait before a dead worker's slot is filled again; it doubles with each quick death. */
const FIRST_RESTART_DELAY = 100;
const MAX_RESTART_DELAY = 5000;
/** A worker that stayed up this long was healthy: its slot's next restart waits FIRST_RESTART_DELAY again. */
const STABLE_AFTER = 10_000;
/**
 * Workers in a row that exited before listening (a port taken, a release that cannot start): the primary gives
 * up and exits 1, so that systemd's Restart= and its start limit see the failure instead of a silent loop.
 */
const MAX_START_FAILURES = 5;
/** Past server.shutdown_timeout, each worker's own limit, before the primary kills what is left. */
const STOP_MARGIN = 5000;
/** How long the primary waits for the exits of the workers it killed before it exits anyway. */
const KILL_WAIT = 2000;

/** pino's level numbers, so the primary's lines read like the workers' (docs/deploy.md "Logs"). */
const LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};
export type LogLevel = keyof typeof LEVELS;

/** What the primary sends a listening worker to stop it; src/server.ts answers with its usual shutdown. */
export interface StopRequest {
  type: 'dashboard-server:stop';
  /** the signal the primary received */
  signal: string;
}

export interface SupervisorOptions {
  /** server.workers */
  workers: number;
  /** server.shutdown_timeout (ms): how long a worker's drain may take */
  shutdownTimeout: number;
  logLevel: LogLevel;
  /** the config file the primary loaded: the workers load the same one */
  configPath: string;
}

/** One worker position: when its process started, whether it listens, and its restart backoff. */
interface Slot {
  startedAt: number;
  listening: boolean;
  delay: number;
  timer?: NodeJS.Timeout;
}

/** Writes pino-shaped JSON lines (level, time, pid, hostname, fields, msg) at `level` and above. */
function jsonLog(level: LogLevel) {
  const base = { pid: process.pid, hostname: hostname() };
  return (at: Exclude<LogLevel, 'silent'>, fields: Record<string, unknown>, msg: string): void => {
    if (LEVELS[at] < LEVELS[level]) return;
    process.stdout.write(
      `${JSON.stringify({ level: LEVELS[at], time: Date.now(), ...base, ...fields, msg })}\n`,
    );
  };
}

/**
 * Calls `stop` when this worker's primary asks it to stop. The primary asks over IPC rather than with a signal:
 * systemd (KillMode=control-group) and a terminal's Ctrl-C signal every process of the service themselves, and a
 * forwarded signal on top would count as the second one that ends the drain at once.
 */
export function onStopRequest(stop: (signal: string) => void): void {
  process.on('message', (message: unknown) => {
    const request = message as Partial<StopRequest> | null;
    if (request?.type === 'dashboard-server:stop') stop(String(request.signal));
  });
}

/**
 * Supervises `options.workers` workers until SIGTERM or SIGINT and resolves with the exit code: 0 when every
 * worker stopped by itself, 1 when one had to be killed, failed its drain, or workers kept failing to start.
 */
export function runSupervisor(options: SupervisorOptions): Promise<number> {
  const log = jsonLog(options.logLevel);
  const slots: Slot[] = Array.from({ length: options.workers }, () => ({
    startedAt: 0,
    listening: false,
    delay: FIRST_RESTART_DELAY,
  }));
  const running = new Map<Worker, Slot>();
  let startFailures = 0;
  let stopping = false;
  let exitCode = 0;
  let stopTimer: NodeJS.Timeout | undefined;
  let done: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => {
    done = resolve;
  });

  function start(slot: Slot): void {
    slot.timer = undefined;
    // The workers get the primary's arguments and environment anyway; DASHBOARD_CONFIG names the file the
    // primary resolved (the default beside src/ included), so both always read the same one.
    const worker = cluster.fork({ DASHBOARD_CONFIG: options.configPath });
    // A failed spawn (EAGAIN at the unit's TasksMax) or IPC error: logged rather than thrown in the primary.
    worker.on('error', (error: Error) => log('error', { err: error.message }, 'worker process error'));
    slot.startedAt = Date.now();
    slot.listening = false;
    running.set(worker, slot);
  }

  function finish(): void {
    clearTimeout(stopTimer);
    done(exitCode);
  }

  function killAll(): void {
    for (const worker of running.keys()) worker.process.kill('SIGKILL');
  }

  /** Stops restarting, asks every worker to drain and exit, and kills those still there after the limit. */
  function stop(signal: string, code: number): void {
    stopping = true;
    exitCode = code;
    for (const slot of slots) clearTimeout(slot.timer);
    const request: StopRequest = { type: 'dashboard-server:stop', signal };
    for (const [worker, slot] of running) {
      // A worker not yet listening may not have its handlers yet (a signal's default action ends it, and it has
      // no clients to drain); a listening one has them, and drains on the request.
      if (!slot.listening || !worker.isConnected()) worker.process.kill('SIGTERM');
      else
        worker.send(request, (error: Error | null) => {
          if (error) worker.process.kill('SIGTERM');
        });
    }
    if (running.size === 0) {
      finish();
      return;
    }
    const limit = options.shutdownTimeout + STOP_MARGIN;
    stopTimer = setTimeout(() => {
      const pids = [...running.keys()].map((worker) => worker.process.pid);
      log('error', { workers: pids }, `workers still running ${limit}ms after the stop; killing them`);
      exitCode = 1;
      killAll();
    }, limit);
  }

  cluster.on('listening', (worker) => {
    const slot = running.get(worker);
    if (slot === undefined || slot.listening) return;
    slot.listening = true;
    startFailures = 0;
    log('debug', { worker: worker.process.pid }, `worker ${worker.process.pid} listening`);
  });

  cluster.on('exit', (worker, code: number | null, signal: string | null) => {
    const slot = running.get(worker);
    if (slot === undefined) return;
    running.delete(worker);
    const pid = worker.process.pid;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (stopping) {
      // Exiting 1 by itself means its drain hit server.shutdown_timeout (or it saw a second signal).
      if (code !== null && code !== 0) exitCode = 1;
      log('info', { worker: pid, code, signal }, `worker ${pid} exited (${how})`);
      if (running.size === 0) finish();
      return;
    }
    if (!slot.listening && ++startFailures >= MAX_START_FAILURES) {
      log(
        'fatal',
        { worker: pid, code, signal },
        `${startFailures} workers in a row exited before listening, the last with ${how}; giving up (their own lines say why)`,
      );
      stop('SIGTERM', 1);
      return;
    }
    if (Date.now() - slot.startedAt >= STABLE_AFTER) slot.delay = FIRST_RESTART_DELAY;
    log(
      'warn',
      { worker: pid, code, signal, restart_in: slot.delay },
      `worker ${pid} exited (${how}); starting another in ${slot.delay}ms`,
    );
    slot.timer = setTimeout(() => start(slot), slot.delay);
    slot.delay = Math.min(slot.delay * 2, MAX_RESTART_DELAY);
  });

  function onSignal(signal: string): void {
    if (stopping) {
      log('warn', { signal }, 'second signal: killing the workers and exiting now');
      exitCode = 1;
      killAll();
      // Their exits come within milliseconds (and the primary reaps them before it exits); the timer is for a
      // process the kernel cannot kill yet.
      if (running.size === 0) finish();
      else setTimeout(finish, KILL_WAIT);
      return;
    }
    log('info', { signal, workers: running.size }, 'shutting down: stopping the workers');
    stop(signal, 0);
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  log(
    'info',
    { workers: options.workers, config: options.configPath },
    `starting ${options.workers} workers`,
  );
  for (const slot of slots) start(slot);
  return exited;
}
