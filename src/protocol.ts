import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { decode } from './codec.ts';
import { TopicError, validateSubscription } from './topics.ts';

/** Most names one subscribe or unsubscribe may carry. */
export const MAX_SUBSCRIPTIONS = 100;

const Names = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: MAX_SUBSCRIPTIONS });

/** Messages a client sends. The `type`/`channels` forms are what the existing web UI sends. */
export const ClientMessageSchema = Type.Union([
  Type.Object({
    action: Type.Union([Type.Literal('subscribe'), Type.Literal('unsubscribe')]),
    subscriptions: Names,
  }),
  Type.Object({ action: Type.Union([Type.Literal('resync'), Type.Literal('ping')]) }),
  Type.Object({
    type: Type.Union([Type.Literal('subscribe'), Type.Literal('unsubscribe')]),
    channels: Names,
  }),
  Type.Object({
    type: Type.Union([Type.Literal('refresh'), Type.Literal('ping')]),
    channels: Type.Optional(Names),
  }),
]);
export type ClientMessage = Static<typeof ClientMessageSchema>;
const checker = TypeCompiler.Compile(ClientMessageSchema);

export type Command =
  | { action: 'subscribe' | 'unsubscribe'; subscriptions: string[] }
  | { action: 'resync' }
  | { action: 'ping' };

export type ErrorCode = 'invalid_message' | 'unknown_action' | 'unknown_topic';

/** A client message that cannot be acted on; it reaches the client as `{"type":"error",code,message}`. */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

const KNOWN_ACTIONS = new Set(['subscribe', 'unsubscribe', 'resync', 'ping', 'refresh']);

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
  if (!checker.Check(message)) {
    const verb =
      (message as { action?: unknown; type?: unknown } | null)?.action ??
      (message as { type?: unknown } | null)?.type;
    if (typeof verb === 'string' && !KNOWN_ACTIONS.has(verb)) {
      throw new ProtocolError('unknown_action', `unknown action ${JSON.stringify(verb.slice(0, 64))}`);
    }
    const error = checker.Errors(message).First();
    const detail = error ? `${error.path || 'message'}: ${error.message}` : 'wrong shape';
    throw new ProtocolError('invalid_message', `invalid message (${detail}); see docs/protocol.md`);
  }
  const verb = 'action' in message ? message.action : message.type;
  if (verb === 'subscribe' || verb === 'unsubscribe') {
    const names =
      'subscriptions' in message ? message.subscriptions : (message as { channels: string[] }).channels;
    try {
      return { action: verb, subscriptions: [...new Set(names.map(validateSubscription))] };
    } catch (error) {
      if (error instanceof TopicError) throw new ProtocolError('unknown_topic', error.message);
      throw error;
    }
  }
  return { action: verb === 'refresh' ? 'resync' : verb };
}
