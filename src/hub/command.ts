import type { ActionRequest } from '../actions/types.ts';

/** What a client asks of the hub, whatever wire protocol it speaks: a protocol's `parse` turns a frame into one. */
export type Command =
  /**
   * `lenient`: names the role may not read are dropped instead of refusing the whole subscribe, and only as many as
   * fit under websocket.max_subscriptions are taken (the b25 clients cannot act on a refusal).
   */
  | { action: 'subscribe' | 'unsubscribe'; subscriptions: string[]; lenient?: boolean }
  | { action: 'resync' }
  /** `echo`: the client's timestamp, sent back in the pong. */
  | { action: 'ping'; echo?: number }
  | { action: 'auth'; token: string }
  /** A trading action, forwarded to order-execution; `requestId` is the client's own id for it. */
  | { action: 'trade'; request: ActionRequest; requestId?: string }
  /** A message that only shows the client is alive (a b25 terminal's pong). */
  | { action: 'none' };

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
