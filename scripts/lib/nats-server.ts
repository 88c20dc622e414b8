import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort } from './free-port.ts';
import { started } from './started.ts';

/**
 * A private nats-server on a free port, for the tests and the benchmarks: subjects are global to a server, so runs
 * side by side must not share one. Needs the `nats-server` binary on PATH (Debian package `nats-server`).
 */
export class NatsServer {
  readonly port: number;
  private process: ChildProcess | undefined;

  private constructor(port: number) {
    this.port = port;
  }

  static async start(): Promise<NatsServer> {
    const server = new NatsServer(await freePort());
    await server.restart();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts the server (again) on the same port; resolves when it accepts clients (within 10 s). */
  async restart(): Promise<void> {
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.process = child;
    await started(child, child.stderr!, 'Server is ready', 'nats-server');
  }

  /** Kills the server at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  }

  /** A new client connection to this server (a publisher), which gives up at once when the server is gone. */
  client(): Promise<NatsConnection> {
    return connect({ servers: this.url, reconnect: false });
  }
}
