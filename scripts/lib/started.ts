import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/**
 * Resolves once `output` (the child's stdout or stderr) has printed `marker` (a server's "ready" line), within
 * 10 s; rejects, with the end of what it printed, if the child exits or fails to start first.
 */
export async function started(
  child: ChildProcess,
  output: Readable,
  marker: string,
  name: string,
): Promise<void> {
  let printed = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start within 10 s: ${printed.slice(-500)}`)),
      10_000,
    );
    output.on('data', (chunk: Buffer) => {
      printed += chunk.toString();
      if (printed.includes(marker)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}: ${printed.slice(-500)}`));
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  // Keep draining: a full pipe would block the server.
  output.resume();
}
