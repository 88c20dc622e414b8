import type { ActionResult } from '../actions/types.ts';
import type { Format } from '../codec.ts';
import type { Json, JsonObject } from '../merge-patch.ts';
import type { Topic } from '../topics.ts';
import type { Command, ErrorCode } from './command.ts';

/** What a connection's protocol is given to render a view: the whole state its subscriptions select. */
export interface SnapshotView {
  sequence: number;
  epoch: string;
  /** When it is sent, in ms since the epoch. */
  at: number;
  data: JsonObject;
  /** The current value of any entity, inside the view or not (a protocol that joins topics reads it). */
  entry(topic: Topic, key?: string): Json | undefined;
}

/** What a connection's protocol is given to render a change: the merge patch from `baseSequence` to `sequence`. */
export interface ChangeView {
  sequence: number;
  /** The sequence of the view the receiving clients hold. */
  baseSequence: number;
  at: number;
  /** RFC 7386 merge patch over the subscribed view. */
  changes: JsonObject;
  /** The whole view after the change, built on demand (a protocol that sends whole lists reads it). */
  view(): JsonObject;
  /** The current value of any entity (a protocol that sends whole entries reads it). */
  entry(topic: Topic, key?: string): Json | undefined;
  /** The value of an entity in the view the receiving clients hold (what it was before this change). */
  before(topic: Topic, key?: string): Json | undefined;
}

/** A reply to one client command (or its refusal), in protocol-neutral terms. */
export type Reply =
  | { type: 'subscribed' | 'unsubscribed'; subscriptions: string[]; sequence: number }
  /** `echo`: the client's own timestamp from its ping, for a protocol that sends it back. */
  | { type: 'pong'; at: number; echo?: number }
  | { type: 'error'; code: ErrorCode; message: string }
  | { type: 'authenticated'; userId: string; expiresAt: number | undefined }
  /** `requestId`: the client's own id for the action, when its protocol has one. */
  | { type: 'action_result'; result: ActionResult; requestId?: string };

/** What a protocol hands the fan-out: one frame, several (sent in order), or none. */
export type Frames = Buffer | readonly Buffer[] | undefined;

/**
 * A wire protocol as one connection speaks it: how a view, a change and a reply become frames, and how a frame
 * from the client becomes a command. The hub's fan-out calls `snapshot` and `change` once per group or cohort and
 * sends the same Buffers to every client in it, so those two must depend only on their argument: clients whose
 * protocols share a `key` are put in the same groups and get the same frames. A protocol returns `undefined` for
 * something it does not send (a client that has no message for it).
 */
export interface WireProtocol {
  /** The protocol's name, e.g. `hub`, `b25-web`: the `protocol` label of the client metrics. */
  readonly name: string;
  readonly format: Format;
  /** Equal keys, equal frames: part of the group key (`<name>/<format>` for a protocol with no other setting). */
  readonly key: string;
  /** The frame option handed to `ws.send`, built once. */
  readonly sendOptions: { readonly binary: boolean };
  /** Parses one client frame. Throws ProtocolError for a frame that cannot be acted on. */
  parse(data: Buffer, binary: boolean): Command;
  snapshot(view: SnapshotView): Frames;
  change(change: ChangeView): Frames;
  reply(reply: Reply): Frames;
  /** A frame sent with each WebSocket ping, for a client that expects its own ping message too. */
  heartbeat?(at: number): Frames;
}
