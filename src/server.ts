import cluster from 'node:cluster';
import { parseCli } from './cli.ts';
import { ConfigError } from './config/errors.ts';
import { loadConfig } from './config/load.ts';
import { onStopRequest, runSupervisor } from './workers.ts';

const USAGE = `Usage: node src/server.ts [options]   (npm start)
Starts dashboard-server: loads the config, listens and serves until SIGTERM or SIGINT.

Options:
  -c, --config FILE  the config file (default DASHBOARD_CONFIG, then config.yaml beside src/)
  --check-config     load and check the config, print one line and exit (0 valid, 1 invalid)
  -h, --help         this help

Every key can be overridden by DASHBOARD_<SECTION>__<KEY> (docs/configuration.md).`;

const { values } = parseCli('dashboard-server', USAGE, {
  options: { config: { type: 'string', short: 'c' }, 'check-config': { type: 'boolean' } },
  allowPositionals: false,
});
const path =
  values.config ?? process.env.DASHBOARD_CONFIG ?? new URL('../config.yaml', import.meta.url).pathname;

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig({ path, env: process.env });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`dashboard-server: ${error.message}\n`);
  process.exit(1);
}

if (values['check-config']) {
  // Used by deploy.sh before switching releases: the same loader and checks as a real start.
  process.stdout.write(`dashboard-server: config OK: ${path}\n`);
  process.exit(0);
}

if (config.server.workers > 1 && cluster.isPrimary) {
  // This process only supervises; each worker runs this file again and takes the path below (src/workers.ts).
  const { workers, shutdown_timeout, log_level } = config.server;
  process.exit(
    await runSupervisor({
      workers,
      shutdownTimeout: shutdown_timeout,
      logLevel: log_level,
      configPath: path,
    }),
  );
}

// Tracing starts before the app is imported: ioredis and @grpc/grpc-js are patched as they load (src/tracing-sdk.ts).
if (config.tracing.endpoint !== undefined) {
  const { startTracing } = await import('./tracing-sdk.ts');
  startTracing({ ...config.tracing, endpoint: config.tracing.endpoint });
}
const { buildApp } = await import('./app.ts');
const app = await buildApp(config);
let stopping = false;
let stoppedByPrimary = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    // The signal that made the primary ask may reach this worker too (systemd and Ctrl-C signal every process):
    // it is not a second one; the primary acts on a second signal itself.
    if (stoppedByPrimary) return;
    app.log.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  stopping = true;
  app.log.info({ signal }, 'shutting down');
  // The drain ends before shutdown_timeout (plugins/hub.ts drainTimeout); this is the backstop if closing Redis or
  // HTTP hangs after it: shutdown_timeout is the one limit.
  const timer = setTimeout(() => {
    app.log.error('shutdown timed out; exiting');
    process.exit(1);
  }, config.server.shutdown_timeout);
  timer.unref();
  await app.close();
  clearTimeout(timer);
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
if (cluster.isWorker) {
  onStopRequest((signal) => {
    if (stopping) return;
    stoppedByPrimary = true;
    void shutdown(signal);
  });
}

try {
  await app.listen({ host: config.server.host, port: config.server.port });
} catch (error) {
  app.log.fatal({ err: error }, `cannot listen on ${config.server.host}:${config.server.port}`);
  process.exit(1);
}
