/**
 * Creates the development JWT secret that config.yaml points at (.dev/jwt-secret), if it is missing, so that
 * `npm start` and `npm run token` work on a fresh checkout. Production configs point elsewhere.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';

const dir = new URL('../.dev/', import.meta.url);
const file = new URL('jwt-secret', dir);
if (!existsSync(file)) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  process.stderr.write(`dev-secret: created a development JWT secret at ${file.pathname}\n`);
}
