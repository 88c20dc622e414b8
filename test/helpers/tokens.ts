import { createSigner } from 'fast-jwt';

export const TEST_SECRET = 'test-secret-that-is-at-least-32-bytes-long';

/** Signs a token the way the login service (HS256, `userId`) or another issuer would. */
export function signToken(
  claims: Record<string, unknown>,
  {
    key = TEST_SECRET,
    algorithm = 'HS256',
    expiresIn = 15 * 60_000,
  }: { key?: string; algorithm?: string; expiresIn?: number } = {},
): string {
  const sign = createSigner({ key, algorithm: algorithm as 'HS256', ...(expiresIn ? { expiresIn } : {}) });
  return sign(claims);
}

/** A token with `alg: none` and no signature, as an attacker would send it. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}.`;
}
