import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { configFromDocument } from '../../src/config/load.ts';

export interface RunningApp {
  app: FastifyInstance;
  /** `http://127.0.0.1:PORT` */
  url: string;
  close(): Promise<void>;
}

/**
 * Builds and starts the service in this process on a free port (or `overrides.server.port`) against `redisUrl`,
 * with `overrides` merged into the config (for the tests and the in-process benchmarks).
 */
export async function startApp(
  redisUrl: string,
  overrides: Record<string, Record<string, unknown>> = {},
  { logStream }: { logStream?: NodeJS.WritableStream } = {},
): Promise<RunningApp> {
  // Auth is off unless the caller configures it: the data-path tests and benchmarks are not about tokens.
  const document: Record<string, Record<string, unknown>> = {
    server: { host: '127.0.0.1', port: 0, log_level: 'silent' },
    redis: { url: redisUrl },
    auth: { enabled: false },
  };
  for (const [section, keys] of Object.entries(overrides))
    document[section] = { ...document[section], ...keys };
  const config = configFromDocument(document);
  const app = await buildApp(config, logStream ? { logStream } : { logger: false });
  await app.listen({ host: config.server.host, port: config.server.port });
  const { port } = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/** Resolves when /ready says the app is subscribed and loaded (and connected to NATS, when configured). */
export async function waitReady(app: FastifyInstance, timeoutMs = 5000): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  if (app.redisIngest.notReadyReason() !== undefined)
    await once(app.redisIngest.events, 'loaded', { signal });
  while (app.natsIngest.notReadyReason() !== undefined)
    await once(app.natsIngest.events, 'status', { signal });
}
