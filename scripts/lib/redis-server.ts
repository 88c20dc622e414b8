import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from './free-port.ts';
import { started } from './started.ts';

/** Starts `command args…` with stdout piped (e.g. pinned to a CPU, as the benchmark does). */
export type Launcher = (command: string, args: string[]) => ChildProcess;

const spawnPiped: Launcher = (command, args) =>
  spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });

/**
 * A private redis-server on a free port, for the tests, the soak and the benchmarks: pub/sub channels are global
 * to a server, so runs side by side must not share one. Needs the `redis-server` binary on PATH.
 */
export class RedisServer {
  readonly port: number;
  private readonly launch: Launcher;
  private process: ChildProcess | undefined;

  private constructor(port: number, launch: Launcher) {
    this.port = port;
    this.launch = launch;
  }

  static async start(launch = spawnPiped): Promise<RedisServer> {
    return RedisServer.startOn(await freePort(), launch);
  }

  static async startOn(port: number, launch = spawnPiped): Promise<RedisServer> {
    const redis = new RedisServer(port, launch);
    await redis.restart();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The server's process id (e.g. to freeze it with SIGSTOP); undefined before it starts. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  /** Starts the server (again) on the same port; resolves when it accepts connections (within 10 s). */
  async restart(): Promise<void> {
    const child = this.launch('redis-server', [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ]);
    this.process = child;
    await started(child, child.stdout!, 'Ready to accept connections', 'redis-server');
  }

  /** Kills the server at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  }

  /** A new client connection to this server. */
  client(): Redis {
    return new Redis(this.url, { maxRetriesPerRequest: 1 });
  }
}
