/** What every part of one benchmark run shares: paths, CPU pinning, the token secret, child processes, the log. */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from '../common.ts';
import { options } from './options.ts';

export const root = new URL('../..', import.meta.url).pathname;
export const bench = join(root, 'bench');
export const SERVER_CPU = options.pin ? 0 : undefined;
export const OTHERS_CPU = options.pin ? 1 : undefined;
export const benchDir = mkdtempSync(join(tmpdir(), 'bench-'));
export const secret = 'bench-secret-bench-secret-bench-secret-42';
writeFileSync(join(benchDir, 'jwt-secret'), secret);
// Outside the work tree: profiles are large and not for committing.
export const profileDir = join(tmpdir(), 'dashboard-server-bench-profiles');
if (options.profile) mkdirSync(profileDir, { recursive: true });
const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Work to do once the processes are stopped (the hub-history run's scratch database). */
const cleanups: (() => Promise<void>)[] = [];
export function onCleanup(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child, 2000)));
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => {});
}
process.on('SIGINT', () => {
  void cleanupAll().then(() => process.exit(130));
});

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}
export function symbolList(): string[] {
  return Array.from({ length: options.symbols }, (_, i) => `SYM${i}USDT`);
}
