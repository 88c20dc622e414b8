import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/** How a child process ended, with everything it wrote. */
export interface ChildRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Collects a child's stdout and stderr (when piped) until it closes. */
export function collect(child: ChildProcess): Promise<ChildRun> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  return once(child, 'close').then(([code]) => ({ code: code as number, stdout, stderr }));
}
