/** Helpers shared by the benchmark's processes: the clock, spawning pinned children, /proc readers, IPC. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Histogram } from './histogram.ts';
import type { ClassStats } from './loadgen.ts';

/** CLOCK_MONOTONIC in ms (µs precision): one clock for every process of the host, unlike Date.now() per process. */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// One free-port helper for the tests, the soak and the benchmark.
export { freePort } from '../scripts/lib/free-port.ts';

export interface SpawnOptions {
  /** Pin the process (and its threads) to this CPU with taskset; undefined leaves it to the scheduler. */
  cpu?: number | undefined;
  env?: NodeJS.ProcessEnv;
  ipc?: boolean;
  /** Pipe stdout to the parent instead of inheriting it. */
  pipeStdout?: boolean;
}

/**
 * Spawns `command args…` through `bash -c 'ulimit -n <hard limit>; exec …'` (sockets need file descriptors),
 * optionally pinned with taskset. exec keeps the PID, so `child.pid` is the command's own PID for /proc.
 */
export function spawnPinned(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  const pin = options.cpu === undefined ? [] : ['taskset', '-c', String(options.cpu)];
  return spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bench', ...pin, command, ...args], {
    env: options.env ?? process.env,
    stdio: [
      'ignore',
      options.pipeStdout ? 'pipe' : 'inherit',
      'inherit',
      ...(options.ipc ? ['ipc' as const] : []),
    ],
  });
}

/** Waits for the first IPC message with `evt`, or throws after `timeoutMs`. */
export function waitForMessage<T extends { evt: string }>(
  child: ChildProcess,
  evt: string,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no '${evt}' from pid ${child.pid} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (message: T) => {
      if (message?.evt !== evt) return;
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`pid ${child.pid} exited (${code}) before '${evt}'`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

export async function request<T extends { evt: string }>(
  child: ChildProcess,
  message: object,
  evt: string,
  timeoutMs = 30_000,
): Promise<T> {
  const reply = waitForMessage<T>(child, evt, timeoutMs);
  child.send(message);
  return reply;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Ends a child: SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited, with how it exited (a child
 * that had already exited, e.g. crashed, reports that exit).
 */
export async function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<ChildExit> {
  if (!child) return { code: null, signal: null };
  if (child.exitCode !== null || child.signalCode !== null)
    return { code: child.exitCode, signal: child.signalCode };
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const [code, signal] = await exited;
  clearTimeout(timer);
  return { code, signal };
}

// ---- /proc ----

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const HZ = 100;

function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** user+sys CPU seconds of a process (all its threads). */
export function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  if (!fields) return Number.NaN;
  // Fields 14 (utime) and 15 (stime) of proc(5); `fields[0]` is field 3.
  return (Number(fields[11]) + Number(fields[12])) / HZ;
}

/** The CPU the process last ran on (field 39, "processor"). */
export function processor(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields ? Number(fields[36]) : undefined;
}

export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) * 1024;
  } catch {
    return Number.NaN;
  }
}

/** Busy and total jiffies per CPU (`cpu` = all), from /proc/stat. */
export function systemCpu(): Record<string, { busy: number; total: number }> {
  const result: Record<string, { busy: number; total: number }> = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    if (!line.startsWith('cpu')) continue;
    const [name, ...rest] = line.trim().split(/\s+/);
    const values = rest.map(Number);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = values[3] + values[4];
    result[name] = { busy: total - idle, total };
  }
  return result;
}

/**
 * What a baseline server (limit, naive) reports to bench/run.ts: its tick times and frames sent, reset at `start`
 * and sent back at `stop` over IPC with the event-loop delay, plus anything `extra` adds.
 */
export class BaselineMeter {
  tickTimes = new Histogram();
  sentFrames = 0;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });

  /** Answers run.ts's `start`/`stop` and SIGTERM; says `ready` when the server listens. */
  serve(server: { on(event: 'listening', listener: () => void): unknown }, extra: () => object = () => ({})) {
    this.loopDelay.enable();
    process.on('message', (message: { cmd: string }) => {
      if (message.cmd === 'start') {
        this.loopDelay.reset();
        this.tickTimes = new Histogram();
        this.sentFrames = 0;
        process.send!({ evt: 'started' });
      } else if (message.cmd === 'stop') {
        process.send!({
          evt: 'stats',
          loopDelayP99Ms: this.loopDelay.percentile(99) / 1e6,
          tick: this.tickTimes.toJSON(),
          sentFrames: this.sentFrames,
          ...extra(),
        });
      }
    });
    process.on('SIGTERM', () => process.exit(0));
    server.on('listening', () => process.send!({ evt: 'ready' }));
  }
}

/** A class's counters before any client of it connected. */
export function emptyClassStats(): ClassStats {
  return {
    clients: 0,
    msgs: 0,
    bytes: 0,
    sampledClients: 0,
    sampledMsgs: 0,
    lost: 0,
    outOfOrder: 0,
    extraSnapshots: 0,
    errors: 0,
  };
}
