/** Keys, secrets, token forgery and auth config sections for the security tests. */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import { signToken } from './tokens.ts';

/** The login service's secret (the first of `auth.jwt.secret`). */
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

/** An HS256 token signed with SECRET_A (or `key`), valid 15 minutes unless the claims carry their own `exp`. */
export function hsToken(claims: Record<string, unknown>, key = SECRET_A): string {
  return signToken(claims, { key, expiresIn: 'exp' in claims ? 0 : 15 * 60_000 });
}

/** A token signed with a private key (RS256, ES256, …), valid 15 minutes. */
export function asymmetricToken(
  claims: Record<string, unknown>,
  privateKey: string,
  algorithm: string,
): string {
  const sign = createSigner({ key: privateKey, algorithm: algorithm as 'RS256', expiresIn: 15 * 60_000 });
  return sign(claims);
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
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode(header)}.${encode(payload)}`;
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
