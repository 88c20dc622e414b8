/**
 * Mints a token signed with the configured shared secret, for local development and tests:
 *   npm run token -- --role trader [--user alice] [--ttl 15m] [--config config.yaml]
 * Claims are those of the login service ({userId, email}) plus `role`, and `iss`/`aud` when configured.
 */
import { createSigner } from 'fast-jwt';
import { parseCli } from '../src/cli.ts';
import { ConfigError } from '../src/config/errors.ts';
import { loadConfig } from '../src/config/load.ts';
import { parseDuration } from '../src/config/units.ts';

const USAGE = `Usage: npm run token -- [options]   (node scripts/token.ts)
Mints a development token signed with the configured shared secret; prints it on stdout.

Options:
  --role ROLE        the role claim (default trader)
  --user ID          the userId claim (default dev-user)
  --email ADDRESS    the email claim
  --ttl DURATION     lifetime, e.g. 15m, 1h (default 15m)
  -c, --config FILE  the config to read auth.jwt from (default DASHBOARD_CONFIG, then config.yaml)
  -h, --help         this help`;

const { values } = parseCli('token', USAGE, {
  options: {
    role: { type: 'string', default: 'trader' },
    user: { type: 'string', default: 'dev-user' },
    email: { type: 'string' },
    ttl: { type: 'string', default: '15m' },
    config: { type: 'string', short: 'c' },
  },
});

try {
  const path =
    values.config ?? process.env.DASHBOARD_CONFIG ?? new URL('../config.yaml', import.meta.url).pathname;
  const { auth } = loadConfig({ path, env: process.env });
  const algorithm = auth.jwt.algorithms.find((a) => a.startsWith('HS'));
  if (!algorithm || auth.jwt.secrets.length === 0) {
    throw new ConfigError('token: the config has no HS* algorithm and shared secret to sign with');
  }
  const sign = createSigner({
    key: auth.jwt.secrets[0],
    algorithm,
    expiresIn: parseDuration(values.ttl),
    ...(auth.jwt.issuer ? { iss: auth.jwt.issuer } : {}),
    ...(auth.jwt.audience ? { aud: auth.jwt.audience } : {}),
  });
  process.stdout.write(
    `${sign({ userId: values.user, email: values.email ?? `${values.user}@localhost`, role: values.role })}\n`,
  );
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}
