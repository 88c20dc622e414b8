/** The real service as a child process (src/server.ts), for configurations the in-process app cannot host. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.ts';

const root = new URL('../..', import.meta.url).pathname;

export interface ServerProcess {
  /** `http://127.0.0.1:PORT` */
  url: string;
  child: ChildProcess;
  output(): string;
  close(): Promise<void>;
}

/**
 * Starts `src/server.ts` with `document` as its config file (JSON is YAML); resolves once it listens, rejects
 * with its stderr if it exits first.
 */
export async function startServerProcess(
  document: Record<string, Record<string, unknown>>,
  { nodeOptions = [] }: { nodeOptions?: string[] } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'dashboard-security-'));
  const path = join(dir, 'config.yaml');
  const config = {
    ...document,
    server: { host: '127.0.0.1', log_level: 'info', ...document.server, port },
  };
  writeFileSync(path, JSON.stringify(config));
  const child = spawn(process.execPath, [...nodeOptions, join(root, 'src/server.ts'), '--config', path], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit');
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk;
      if (stdout.includes('Server listening at')) resolve();
    });
    exited.then(([code]) => {
      const lines = stderr.trim().split('\n');
      const why = lines.find((line) => /Error\b/.test(line)) ?? lines[0];
      reject(new Error(`server exited with ${code} before listening: ${why}`));
    });
  });
  try {
    await listening;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => stdout,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}
