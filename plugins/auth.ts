import fastifyJwt from '@fastify/jwt';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import {
  AddressAllowlist,
  ANONYMOUS_PRINCIPAL,
  ClaimsError,
  extractToken,
  offersCredential,
  type Principal,
  principalFromClaims,
  TopicPermissions,
} from '../src/access.ts';
import { HttpError } from '../src/errors.ts';

/** Why a token was refused: sent as a 401 over HTTP; its `code` is the socket's error reply too. */
export class AuthError extends HttpError {
  declare readonly code: AuthErrorCode;
  constructor(code: AuthErrorCode, message: string) {
    super(code, message);
  }
}
type AuthErrorCode = 'missing_token' | 'invalid_token' | 'token_expired';

declare module 'fastify' {
  interface FastifyInstance {
    auth: {
      readonly enabled: boolean;
      /** Whether this principal may read this topic or symbol-scoped subscription. */
      mayRead(principal: Principal, subscription: string): boolean;
      /** Verifies a token against every configured key; throws AuthError. */
      verify(token: string): Principal;
      /**
       * The principal of a request, from its header, subprotocol or query token; without any token, the
       * auth.anonymous principal if the request comes from one of its addresses. Throws AuthError.
       */
      authenticate(request: FastifyRequest): Principal;
    };
  }
  interface FastifyRequest {
    /** Set by the hooks that authenticate (the /ws upgrade, /api/v1/state, ops routes with a token). */
    principal?: Principal;
  }
}

/** Who may do anything when `auth.enabled` is false (local development only). */

const REASONS: Record<string, string> = {
  FAST_JWT_EXPIRED: 'token expired',
  FAST_JWT_INACTIVE: 'token not yet valid',
  FAST_JWT_MALFORMED: 'token malformed',
  FAST_JWT_INVALID_ALGORITHM: 'token algorithm not accepted',
  FAST_JWT_MISSING_SIGNATURE: 'unsigned token not accepted',
  FAST_JWT_INVALID_SIGNATURE: 'token signature invalid',
  FAST_JWT_INVALID_CLAIM_VALUE: 'token issuer or audience not accepted',
  FAST_JWT_MISSING_REQUIRED_CLAIM: 'token lacks a required claim (exp, or the configured iss/aud)',
};

/**
 * JWT verification (@fastify/jwt): tokens of the login service and the API gateway, HS* with shared secrets
 * and RS*, PS*, ES* with public keys. Each key is tried only with the algorithms of its kind, so an HS256 token
 * can never be checked against a public key used as an HMAC secret (algorithm confusion).
 */
export default fp(
  async (fastify) => {
    const { auth } = fastify.config;
    const { jwt } = auth;
    const permissions = new TopicPermissions(auth.topic_roles);
    const symmetric = jwt.algorithms.filter((a) => a.startsWith('HS'));
    const asymmetric = jwt.algorithms.filter((a) => !a.startsWith('HS'));
    const keys = [
      ...jwt.secrets.map((key) => ({ key, algorithms: symmetric })),
      ...jwt.public_keys.map((key) => ({ key, algorithms: asymmetric })),
    ];

    // Token-less access from these addresses only (never loopback unless listed); nothing when auth is off.
    const anonymous =
      auth.enabled && auth.anonymous.enabled
        ? {
            ...auth.anonymous,
            addresses: new AddressAllowlist(auth.anonymous.allowed_cidrs, { loopback: false }),
          }
        : undefined;

    if (!auth.enabled) {
      fastify.log.warn(
        '!!! auth.enabled is false: anyone who can reach this port sees every topic, including orders and balances. For local development only. !!!',
      );
      if (auth.anonymous.enabled)
        fastify.log.warn('auth.anonymous has no effect while auth.enabled is false');
    } else {
      const first = keys[0];
      await fastify.register(fastifyJwt, {
        // Verify-only: a public key must be given as such, or @fastify/jwt tries to build a signer from it.
        secret: first.algorithms === symmetric ? first.key : { public: first.key },
        verify: {
          algorithms: jwt.algorithms,
          ...(jwt.issuer ? { allowedIss: jwt.issuer } : {}),
          ...(jwt.audience ? { allowedAud: jwt.audience } : {}),
          clockTolerance: jwt.clock_tolerance,
          // fast-jwt checks iss/aud only when present: a configured issuer or audience must be required too.
          requiredClaims: ['exp', ...(jwt.issuer ? ['iss'] : []), ...(jwt.audience ? ['aud'] : [])],
        },
      });
    }

    if (anonymous) {
      fastify.log.warn(
        { allowed_cidrs: anonymous.allowed_cidrs, role: anonymous.role },
        `auth.anonymous is enabled: /ws and /api/v1/state without a token are admitted from ${anonymous.allowed_cidrs.join(', ')} with role ${anonymous.role}; anyone who reaches the hub through these addresses reads what that role allows`,
      );
    }

    function verify(token: string): Principal {
      if (!auth.enabled) return ANONYMOUS_PRINCIPAL;
      let failure: unknown;
      for (const { key, algorithms } of keys) {
        try {
          const claims = fastify.jwt.verify<Record<string, unknown>>(token, { key, algorithms });
          return principalFromClaims(claims, auth.default_role);
        } catch (error) {
          if (error instanceof ClaimsError) throw new AuthError('invalid_token', error.message);
          failure = error;
          const code = (error as { code?: string }).code;
          // Past the signature check with this key: another key cannot make the token valid.
          if (code !== 'FAST_JWT_INVALID_SIGNATURE' && code !== 'FAST_JWT_INVALID_ALGORITHM') break;
        }
      }
      const code = (failure as { code?: string }).code ?? '';
      throw new AuthError(
        code === 'FAST_JWT_EXPIRED' ? 'token_expired' : 'invalid_token',
        REASONS[code] ?? 'token invalid',
      );
    }

    fastify.decorate('auth', {
      enabled: auth.enabled,
      mayRead: (principal: Principal, subscription: string) =>
        !auth.enabled || permissions.allows(principal.role, subscription),
      verify,
      authenticate(request: FastifyRequest): Principal {
        if (!auth.enabled) return ANONYMOUS_PRINCIPAL;
        const found = extractToken(request.headers, request.url);
        // A token is always verified: a bad one is refused, even from an anonymous address.
        if (found) return verify(found.token);
        if (anonymous?.addresses.allows(request.ip) && !offersCredential(request.headers, request.url)) {
          return {
            userId: `anonymous@${request.ip}`,
            role: anonymous.role,
            expiresAt: undefined,
            tokenless: true,
          };
        }
        throw new AuthError(
          'missing_token',
          'no token: send Authorization: Bearer, the bearer subprotocol or ?token=',
        );
      },
    });
  },
  { name: 'auth', dependencies: ['config'] },
);
