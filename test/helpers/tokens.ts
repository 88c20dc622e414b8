/** Secrets, keys, tokens (signed, unsigned, forged) and `auth` config sections for the tests. */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { createSigner } from 'fast-jwt';

/** The login service's secret (the first of `auth.jwt.secret`; the only one where a test configures just one). */
export const SECRET_A = 'security-suite-login-service-secret-0123456789';
/** The API gateway's secret (the second of `auth.jwt.secret`). */
export const SECRET_B = 'security-suite-api-gateway-secret-9876543210ab';
/** A secret the server does not know. */
export const SECRET_OTHER = 'security-suite-attacker-secret-that-is-long-enough';

export interface KeyPair {
  publicKey: string;
  privateKey: string;
}

let rsa: KeyPair | undefined;
let ec: KeyPair | undefined;

/** An RSA 2048 key pair (SPKI / PKCS#8 PEM), generated once per process. */
export function rsaKeys(): KeyPair {
  rsa ??= generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return rsa;
}

/** A P-256 key pair (SPKI / PKCS#8 PEM), generated once per process. */
export function ecKeys(): KeyPair {
  ec ??= generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return ec;
}

/** Now, in JWT seconds. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * A token as the login service (HS256 with SECRET_A, `userId`) or another issuer signs it: `key` is a secret for
 * HS*, a private key for RS* / ES*. Valid 15 minutes unless the claims carry their own `exp`.
 */
export function signToken(claims: Record<string, unknown>, key = SECRET_A, algorithm = 'HS256'): string {
  const sign = createSigner({
    key,
    algorithm: algorithm as 'HS256',
    ...('exp' in claims ? {} : { expiresIn: 15 * 60_000 }),
  });
  return sign(claims);
}

function base64url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A token with `alg: none` and no signature, as an attacker would send it. */
export function unsignedToken(claims: Record<string, unknown>): string {
  return `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ exp: nowSeconds() + 600, ...claims })}.`;
}

/**
 * A token forged by hand: any header, any payload, HMAC-SHA256 over them with `secret` as given (e.g. the text
 * of a public key, for algorithm confusion). No library check stands in the way.
 */
export function forgedHmacToken(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  secret: string,
): string {
  const input = `${base64url(header)}.${base64url(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** The signature part of a JWT (what must never reach a log, even alone). */
export function signatureOf(token: string): string {
  return token.split('.')[2];
}

/**
 * An `auth` config section with JWT on: HS256 with SECRET_A unless `jwt` says otherwise; a key given as
 * `undefined` is left out (e.g. `secret: undefined` for a public-key-only config).
 */
export function authOn(
  jwt: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const merged = Object.entries({ algorithms: ['HS256'], secret: SECRET_A, ...jwt }).filter(
    ([, value]) => value !== undefined,
  );
  return { enabled: true, jwt: Object.fromEntries(merged), ...extra };
}
