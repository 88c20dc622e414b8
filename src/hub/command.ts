/** What a client asks of the hub, whatever wire protocol it speaks: a protocol's `parse` turns a frame into one. */
export type Command =
  | { action: 'subscribe' | 'unsubscribe'; subscriptions: string[] }
  | { action: 'resync' }
  | { action: 'ping' }
  | { action: 'auth'; token: string };

export type ErrorCode =
  | 'invalid_message'
  | 'unknown_action'
  | 'unknown_topic'
  | 'forbidden_topic'
  | 'too_many_subscriptions'
  | 'rate_limited'
  | 'invalid_token'
  | 'token_expired';

/** A client message that cannot be acted on: counted by code, and answered as the client's protocol says. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
