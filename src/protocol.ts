import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { decode } from './codec.ts';
import { TopicError, validateSubscription } from './topics.ts';

/** Most names one subscribe or unsubscribe may carry. */
export const MAX_SUBSCRIPTIONS = 100;

const Names = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: MAX_SUBSCRIPTIONS });

/** Messages a client sends, in the documented `action` form. */
export const ActionMessageSchema = Type.Union([
  Type.Object({
    action: Type.Union([Type.Literal('subscribe'), Type.Literal('unsubscribe')]),
    subscriptions: Names,
  }),
  Type.Object({ action: Type.Union([Type.Literal('resync'), Type.Literal('ping')]) }),
  Type.Object({ action: Type.Literal('auth'), token: Type.String({ minLength: 1, maxLength: 8192 }) }),
]);
/** The same messages in the form the existing web UI sends (`type` and `channels`). */
export const WebUiMessageSchema = Type.Union([
  Type.Object({
    type: Type.Union([Type.Literal('subscribe'), Type.Literal('unsubscribe')]),
    channels: Names,
  }),
  Type.Object({
    type: Type.Union([Type.Literal('refresh'), Type.Literal('ping')]),
    channels: Type.Optional(Names),
  }),
]);
export type ActionMessage = Static<typeof ActionMessageSchema>;
export type WebUiMessage = Static<typeof WebUiMessageSchema>;
const actionChecker = TypeCompiler.Compile(ActionMessageSchema);
const webUiChecker = TypeCompiler.Compile(WebUiMessageSchema);

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

/** A client message that cannot be acted on; it reaches the client as `{"type":"error",code,message}`. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const KNOWN_ACTIONS = new Set(['subscribe', 'unsubscribe', 'resync', 'ping', 'refresh', 'auth']);

/** Parses and validates one client frame into a command. Throws ProtocolError. */
export function parseClientMessage(data: Buffer | string, binary: boolean): Command {
  let message: unknown;
  try {
    message = decode(data, binary);
  } catch {
    throw new ProtocolError(
      'invalid_message',
      binary ? 'frame is not valid MessagePack' : 'frame is not valid JSON',
    );
  }
  // A message with an `action` is read in that form only, whatever else it carries.
  const hasAction = typeof message === 'object' && message !== null && 'action' in message;
  const checker = hasAction ? actionChecker : webUiChecker;
  if (!checker.Check(message)) {
    const verb = (message as Record<string, unknown> | null)?.[hasAction ? 'action' : 'type'];
    if (typeof verb === 'string' && !KNOWN_ACTIONS.has(verb)) {
      throw new ProtocolError('unknown_action', `unknown action ${JSON.stringify(verb.slice(0, 64))}`);
    }
    const error = checker.Errors(message).First();
    const detail = error ? `${error.path || 'message'}: ${error.message}` : 'wrong shape';
    throw new ProtocolError('invalid_message', `invalid message (${detail}); see docs/protocol.md`);
  }
  const command: { verb: string; names?: string[] } = hasAction
    ? {
        verb: (message as ActionMessage).action,
        names: (message as { subscriptions?: string[] }).subscriptions,
      }
    : { verb: (message as WebUiMessage).type, names: (message as WebUiMessage).channels };
  const { verb, names } = command;
  if (verb === 'subscribe' || verb === 'unsubscribe') {
    try {
      return { action: verb, subscriptions: [...new Set(names!.map(validateSubscription))] };
    } catch (error) {
      if (error instanceof TopicError) throw new ProtocolError('unknown_topic', error.message);
      throw error;
    }
  }
  if (verb === 'auth') return { action: 'auth', token: (message as { token: string }).token };
  return { action: verb === 'refresh' || verb === 'resync' ? 'resync' : 'ping' };
}
