import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parseActionRequest } from '../../actions/request.ts';
import { ACTION_KINDS, type ActionKind, type ActionResult } from '../../actions/types.ts';
import { decode, encode, FORMATS, type Format, isBinary } from '../../codec.ts';
import { TopicError, validateSubscription } from '../../topics.ts';
import { type Command, ProtocolError } from '../command.ts';
import type { ChangeView, Reply, SnapshotView, WireProtocol } from '../protocol.ts';

/** The hub's own wire protocol (docs/protocol.md): JSON or MessagePack, `action` commands, merge-patch diffs. */

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
  Type.Object({
    action: Type.Union(ACTION_KINDS.map((kind) => Type.Literal(kind))),
    data: Type.Object({}),
    request_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  }),
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

const KNOWN_ACTIONS = new Set([
  'subscribe',
  'unsubscribe',
  'resync',
  'ping',
  'refresh',
  'auth',
  ...ACTION_KINDS,
]);

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
  if ((ACTION_KINDS as readonly string[]).includes(verb)) {
    const { data, request_id: requestId } = message as { data: unknown; request_id?: string };
    return {
      action: 'trade',
      request: parseActionRequest(verb as ActionKind, data),
      ...(requestId === undefined ? {} : { requestId }),
    };
  }
  return { action: verb === 'refresh' || verb === 'resync' ? 'resync' : 'ping' };
}

/** Frames in today's shape, field order included: a client comparing bytes sees no difference. */
export class HubProtocol implements WireProtocol {
  readonly name = 'hub';
  readonly format: Format;
  readonly key: string;
  readonly sendOptions: { readonly binary: boolean };

  constructor(format: Format) {
    this.format = format;
    this.key = `hub/${format}`;
    this.sendOptions = { binary: isBinary(format) };
  }

  parse(data: Buffer, binary: boolean): Command {
    return parseClientMessage(data, binary);
  }

  snapshot(view: SnapshotView): Buffer {
    return encode(this.format, {
      type: 'state_update',
      sequence: view.sequence,
      epoch: view.epoch,
      timestamp: new Date(view.at).toISOString(),
      data: view.data,
    });
  }

  change(change: ChangeView): Buffer {
    return encode(this.format, {
      type: 'diff_update',
      sequence: change.sequence,
      base_sequence: change.baseSequence,
      timestamp: new Date(change.at).toISOString(),
      changes: change.changes,
    });
  }

  reply(reply: Reply): Buffer {
    switch (reply.type) {
      case 'subscribed':
      case 'unsubscribed':
        return encode(this.format, {
          type: reply.type,
          subscriptions: reply.subscriptions,
          sequence: reply.sequence,
        });
      case 'pong':
        return encode(this.format, { type: 'pong', timestamp: new Date(reply.at).toISOString() });
      case 'error':
        return encode(this.format, { type: 'error', code: reply.code, message: reply.message });
      case 'authenticated':
        return encode(this.format, {
          type: 'authenticated',
          user_id: reply.userId,
          expires_at: reply.expiresAt === undefined ? null : new Date(reply.expiresAt).toISOString(),
        });
      case 'action_result':
        return encode(this.format, actionResultMessage(reply.result, reply.requestId));
    }
  }
}

/** One instance per format, shared by every connection that speaks it (it holds no per-connection state). */
const HUB_PROTOCOLS = Object.fromEntries(
  FORMATS.map((format) => [format, new HubProtocol(format)]),
) as Record<Format, HubProtocol>;

/** The hub protocol in `format`. */
export function hubProtocol(format: Format): HubProtocol {
  return HUB_PROTOCOLS[format];
}

/** `{"type":"action_result", …}`: the outcome of one trading action, snake_case, absent fields left out. */
function actionResultMessage(result: ActionResult, requestId: string | undefined): Record<string, unknown> {
  const message: Record<string, unknown> = { type: 'action_result', action: result.kind };
  if (requestId !== undefined) message.request_id = requestId;
  message.outcome = result.outcome;
  const fields: [string, unknown][] = [
    ['order_id', result.orderId],
    ['client_order_id', result.clientOrderId],
    ['state', result.state],
    ['symbol', result.symbol],
    ['side', result.side],
    ['order_type', result.type],
    ['quantity', result.quantity],
    ['price', result.price],
    ['reason', result.reason],
  ];
  for (const [name, value] of fields) if (value !== undefined) message[name] = value;
  message.timestamp = new Date(result.at).toISOString();
  return message;
}
