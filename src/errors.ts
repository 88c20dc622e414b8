/**
 * Every error an HTTP client can be answered with: its code, its status, and the one body shape
 * `{"error": code, "message": …}` (docs/operations.md "Errors"). No Fastify in here: plugins/errors.ts renders it.
 */
import { Type } from '@sinclair/typebox';

/** Each code and the HTTP status it is sent with. */
export const HTTP_ERRORS = {
  /** A query parameter (or other input) failed its schema. */
  invalid_request: 400,
  /** Any other request the server could not read (Fastify's own client errors). */
  bad_request: 400,
  unknown_topic: 400,
  missing_token: 401,
  invalid_token: 401,
  token_expired: 401,
  forbidden: 403,
  forbidden_origin: 403,
  forbidden_topic: 403,
  not_found: 404,
  /** A request timed out before it was read (Node's request timeout). */
  request_timeout: 408,
  payload_too_large: 413,
  headers_too_large: 431,
  rate_limited: 429,
  too_many_connections: 429,
  internal_error: 500,
  not_ready: 503,
  /** History is off (no `history.database_url`) or PostgreSQL did not answer a history query. */
  history_unavailable: 503,
  server_full: 503,
  shutting_down: 503,
} as const satisfies Record<string, number>;

export type HttpErrorCode = keyof typeof HTTP_ERRORS;

/** The body of every HTTP 4xx/5xx answer. */
export interface ErrorBody {
  error: HttpErrorCode;
  message: string;
}

/**
 * ErrorBody as a schema, shared by `$id` (plugins/errors.ts adds it; a route's error responses are
 * `Type.Ref(ErrorBodySchema)`): the serializer of those responses and the OpenAPI document's `ErrorBody`.
 */
export const ErrorBodySchema = Type.Object(
  {
    error: Type.Unsafe<HttpErrorCode>({
      type: 'string',
      enum: Object.keys(HTTP_ERRORS),
      description: 'a code of src/errors.ts HTTP_ERRORS (docs/operations.md "Errors")',
    }),
    message: Type.String({ description: 'for people: what was wrong; never a stack or a token' }),
  },
  { $id: 'ErrorBody', description: 'The body of every HTTP 4xx/5xx answer' },
);

/**
 * A route's error responses for its schema: each status answered with ErrorBody, described with the codes it
 * carries on that route (the OpenAPI document shows the description; the serializer sends `error` and `message`).
 */
export function errorResponses<S extends number>(descriptions: Record<S, string>) {
  const ref = (description: string) => Type.Ref(ErrorBodySchema, { description });
  return Object.fromEntries(
    Object.entries<string>(descriptions).map(([status, description]) => [status, ref(description)]),
  ) as Record<S, ReturnType<typeof ref>>;
}

/** An error meant for the client: thrown anywhere in a request, it is sent as its status and `{error, message}`. */
export class HttpError extends Error {
  readonly code: HttpErrorCode;
  readonly statusCode: number;
  constructor(code: HttpErrorCode, message: string) {
    super(message);
    this.code = code;
    this.statusCode = HTTP_ERRORS[code];
  }
}

export function errorBody<C extends HttpErrorCode>(code: C, message: string): ErrorBody & { error: C } {
  return { error: code, message };
}

/** What a 5xx says: never the error's own message or stack, which are for the log. */
export const INTERNAL_MESSAGE = 'internal server error';

/** The code an error from the framework or a library gets, by its status, when it is not an HttpError. */
function codeForStatus(status: number): HttpErrorCode {
  switch (status) {
    case 401:
      return 'invalid_token';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 408:
      return 'request_timeout';
    case 413:
      return 'payload_too_large';
    case 429:
      return 'rate_limited';
    case 431:
      return 'headers_too_large';
    case 503:
      return 'not_ready';
    default:
      return status >= 500 ? 'internal_error' : 'bad_request';
  }
}

/** The default message of a code answered without one of its own (an empty-bodied reply). */
const DEFAULT_MESSAGES: Partial<Record<HttpErrorCode, string>> = {
  bad_request: 'bad request',
  not_found: 'not found',
  request_timeout: 'request timed out',
  payload_too_large: 'payload too large',
  headers_too_large: 'request headers too large',
  rate_limited: 'too many requests',
  internal_error: INTERNAL_MESSAGE,
};

export interface ErrorReply {
  statusCode: number;
  body: ErrorBody;
  /** A 5xx not raised on purpose: log it with its stack. */
  unexpected: boolean;
}

/**
 * Turns anything thrown while handling a request into the status and body sent: an HttpError as it is; a schema
 * validation failure (`validation` set, as Fastify's are) as `invalid_request` with its message; another error
 * with a 4xx `statusCode` by its status, with its message; everything else as a 500 that says nothing of it.
 */
export function toErrorReply(error: unknown): ErrorReply {
  if (error instanceof HttpError) {
    return { statusCode: error.statusCode, body: errorBody(error.code, error.message), unexpected: false };
  }
  const { statusCode, message, validation } = (error ?? {}) as {
    statusCode?: unknown;
    message?: unknown;
    validation?: unknown;
  };
  const text = typeof message === 'string' && message !== '' ? message : undefined;
  if (validation !== undefined) {
    return {
      statusCode: 400,
      body: errorBody('invalid_request', text ?? 'invalid request'),
      unexpected: false,
    };
  }
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    const code = codeForStatus(statusCode);
    return { statusCode, body: errorBody(code, text ?? messageFor(code)), unexpected: false };
  }
  return { statusCode: 500, body: errorBody('internal_error', INTERNAL_MESSAGE), unexpected: true };
}

/** The body for a reply that was sent with an error status and no body of its own. */
export function bodyForStatus(status: number): ErrorBody {
  const code = codeForStatus(status);
  return errorBody(code, messageFor(code));
}

function messageFor(code: HttpErrorCode): string {
  return DEFAULT_MESSAGES[code] ?? code.replaceAll('_', ' ');
}
