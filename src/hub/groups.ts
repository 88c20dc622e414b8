import type { Filter } from '../topics.ts';
import { buildFilter, subscriptionKey } from '../topics.ts';
import type { Frames, WireProtocol } from './protocol.ts';
import type { ClientType, HubClient } from './session.ts';

/**
 * A group is spread over the phases from this many clients per phase (so each phase's encode still serves
 * many sockets), and sent whole again below the lower mark: the gap keeps a group at the edge from flapping.
 */
export const SPREAD_CLIENTS_PER_PHASE = 25;
export const GATHER_CLIENTS_PER_PHASE = 20;

// The slice lists slicesDue hands out, built once: it runs for every group at every phase (send_phases ≤ 100).
const NO_SLICES: readonly number[] = [];
const SINGLE_SLICES: readonly (readonly number[])[] = Array.from({ length: 100 }, (_, index) => [index]);

/**
 * Clients that share type, protocol (with its format) and subscription set: each update is computed and encoded
 * once for all of them, or, once the group is spread, once per phase for the clients of that phase.
 */
export class Group {
  readonly key: string;
  readonly type: ClientType;
  readonly protocol: WireProtocol;
  readonly filter: Filter;
  /** The clients by phase (`client.id % phases`), the slices a spread group is sent in. */
  readonly byPhase: Set<HubClient>[];
  /** Every slice index, for a group sent whole. */
  private readonly allSlices: readonly number[];
  /** The phase a group that is not spread is sent in (groups are dealt round the phases as they are created). */
  readonly phase: number;
  spread = false;
  /** The last snapshot encoded for the group and the state sequence it holds: clients subscribing together share it. */
  snapshot: { sequence: number; frames: Frames } | undefined;
  /** Per phase slice, the lowest `scanned` of its clients: journal entries below the lowest of all can go. */
  readonly minScannedByPhase: number[];

  constructor(
    key: string,
    type: ClientType,
    protocol: WireProtocol,
    filter: Filter,
    sequence: number,
    phases: number,
    phase: number,
  ) {
    this.key = key;
    this.type = type;
    this.protocol = protocol;
    this.filter = filter;
    this.phase = phase;
    this.byPhase = Array.from({ length: phases }, () => new Set<HubClient>());
    this.allSlices = this.byPhase.map((_, index) => index);
    this.minScannedByPhase = new Array<number>(phases).fill(sequence);
  }

  get size(): number {
    let size = 0;
    for (const slice of this.byPhase) size += slice.size;
    return size;
  }

  get minScanned(): number {
    let lowest = this.minScannedByPhase[0];
    for (const scanned of this.minScannedByPhase) lowest = Math.min(lowest, scanned);
    return lowest;
  }

  /** The slices due in `phase`: one slice when spread, every slice in the group's own phase, else none. */
  slicesDue(phase: number): readonly number[] {
    if (this.spread) return SINGLE_SLICES[phase];
    return phase === this.phase ? this.allSlices : NO_SLICES;
  }
}

/**
 * The subscription groups: a client joins the group of its type, protocol and subscription set when that set
 * changes; a group grown past SPREAD_CLIENTS_PER_PHASE per phase is spread over the phases, and gathered again
 * below GATHER_CLIENTS_PER_PHASE.
 */
export class Groups {
  private readonly groups = new Map<string, Group>();
  private readonly phases: number;
  private created = 0;

  constructor(phases: number) {
    this.phases = phases;
  }

  /** Moves the client to the group of its current subscriptions (none when it has none). */
  join(client: HubClient, sequence: number): void {
    this.leave(client);
    if (client.subscriptions.size === 0) return;
    const key = `${client.type}|${client.protocol.key}|${subscriptionKey(client.subscriptions)}`;
    let group = this.groups.get(key);
    if (!group) {
      group = new Group(
        key,
        client.type,
        client.protocol,
        buildFilter(client.subscriptions),
        sequence,
        this.phases,
        this.created++ % this.phases,
      );
      this.groups.set(key, group);
    }
    group.byPhase[client.id % this.phases].add(client);
    client.group = group;
    if (this.phases > 1 && group.size >= SPREAD_CLIENTS_PER_PHASE * this.phases) group.spread = true;
  }

  leave(client: HubClient): void {
    const group = client.group;
    if (!group) return;
    group.byPhase[client.id % this.phases].delete(client);
    client.group = undefined;
    if (group.size === 0) this.groups.delete(group.key);
    else if (group.size < GATHER_CLIENTS_PER_PHASE * this.phases) group.spread = false;
  }

  values(): IterableIterator<Group> {
    return this.groups.values();
  }

  get size(): number {
    return this.groups.size;
  }

  /** Groups large enough to be sent in slices spread over the interval. */
  get spreadCount(): number {
    let spread = 0;
    for (const group of this.groups.values()) if (group.spread) spread++;
    return spread;
  }

  /** The lowest `scanned` of any client in any group, at most `sequence`: journal entries below it can go. */
  minScanned(sequence: number): number {
    let lowest = sequence;
    for (const group of this.groups.values()) lowest = Math.min(lowest, group.minScanned);
    return lowest;
  }
}
