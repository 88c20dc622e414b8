import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parseActionRequest } from '../../actions/request.ts';
import { type Topic, validateSubscription } from '../../topics.ts';
import { type Command, ProtocolError } from '../command.ts';

/**
 * What the trading system's own clients (itziklerner-pag/b25 `ui/web`, `ui/terminal`) send: messages with a `type`
 * and `channels`, JSON text only. Shared by the b25-web and b25-tui protocols; each says which channels it knows.
 */

const Name = Type.String({ minLength: 1, maxLength: 64 });
const Channels = Type.Array(Name, { maxItems: 100 });
const TypeMessageSchema = Type.Object({
  type: Type.String({ minLength: 1, maxLength: 64 }),
  channels: Type.Optional(Channels),
  /** The web UI's store sends one channel this way (`subscribe(channel)`). */
  channel: Type.Optional(Name),
  action: Type.Optional(Type.String({ maxLength: 64 })),
  timestamp: Type.Optional(Type.Unknown()),
  data: Type.Optional(Type.Unknown()),
});
type TypeMessage = Static<typeof TypeMessageSchema>;
const typeMessageChecker = TypeCompiler.Compile(TypeMessageSchema);

/** Channel names of a b25 client → the topics that carry them (empty: nothing carries it yet). */
export type ChannelMap = Readonly<Record<string, readonly Topic[]>>;

/**
 * Whether a frame is in the b25 clients' form: a JSON object with a `type` (the hub's own form has an `action` and
 * no `type`; the web UI's trading actions have both, with `type` `order` or `position`).
 */
export function isTypeForm(data: Buffer, binary: boolean): boolean {
  if (binary) return false;
  const message = parseJson(data);
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return false;
  const { type } = message as { type?: unknown };
  if (typeof type !== 'string' || type === '') return false;
  return !('action' in message) || type === 'order' || type === 'position';
}

function parseJson(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The subscription names for a b25 client's channels: a known channel maps to its topics, a name of the hub's own
 * (`market_data:BTCUSDT`) is taken as is, anything else is ignored (never a reason to refuse the whole message).
 */
export function subscriptionsFor(channels: readonly string[], known: ChannelMap): string[] {
  const names = new Set<string>();
  for (const channel of channels) {
    const topics = Object.hasOwn(known, channel) ? known[channel] : undefined;
    if (topics) {
      for (const topic of topics) names.add(topic);
      continue;
    }
    try {
      names.add(validateSubscription(channel));
    } catch {
      // Unknown to the hub: ignored.
    }
  }
  return [...names];
}

/**
 * Parses one b25 client frame. `withActions`: the web UI's trading actions are read (the terminal UI has none).
 * Throws ProtocolError; a b25 protocol answers none of them (the clients cannot read an error), the hub counts
 * and logs them.
 */
export function parseTypeMessage(
  data: Buffer,
  binary: boolean,
  known: ChannelMap,
  withActions: boolean,
): Command {
  if (binary) throw new ProtocolError('invalid_message', 'binary frames are not read on this protocol');
  const message = parseJson(data);
  if (!typeMessageChecker.Check(message)) {
    const error = typeMessageChecker.Errors(message).First();
    const detail = error ? `${error.path || 'message'}: ${error.message}` : 'not JSON';
    throw new ProtocolError('invalid_message', `invalid message (${detail})`);
  }
  switch (message.type) {
    case 'subscribe':
    case 'unsubscribe':
      return {
        action: message.type,
        subscriptions: subscriptionsFor(channelsOf(message), known),
        lenient: true,
      };
    case 'refresh':
    case 'resync':
      return { action: 'resync' };
    case 'ping': {
      const echo = message.timestamp;
      return typeof echo === 'number' && Number.isFinite(echo)
        ? { action: 'ping', echo }
        : { action: 'ping' };
    }
    case 'pong':
      return { action: 'none' };
    case 'order':
      if (withActions && message.action === 'create')
        return { action: 'trade', request: parseActionRequest('order.create', message.data) };
      if (withActions && message.action === 'cancel')
        return { action: 'trade', request: parseActionRequest('order.cancel', message.data) };
      break;
    case 'position':
      if (withActions && message.action === 'close')
        return { action: 'trade', request: parseActionRequest('position.close', message.data) };
      break;
  }
  const verb = message.action === undefined ? message.type : `${message.type}/${message.action}`;
  throw new ProtocolError('unknown_action', `unknown message ${JSON.stringify(verb.slice(0, 64))}`);
}

function channelsOf(message: TypeMessage): string[] {
  return [...(message.channels ?? []), ...(message.channel === undefined ? [] : [message.channel])];
}
