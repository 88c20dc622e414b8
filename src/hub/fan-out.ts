import { type StateStore, TOO_OLD } from '../state.ts';
import { CloseCode } from './close-codes.ts';
import type { Group, Groups } from './groups.ts';
import type { Frames, Reply } from './protocol.ts';
import { type ClientType, type HubClient, OPEN, type Sessions } from './session.ts';
import type { ErrorReport, HubStats } from './stats.ts';

export interface FanOutOptions {
  /** A client with more bytes than this waiting in its socket is skipped this tick (conflation). */
  maxBuffered: number;
  /** A client behind (skipped) for longer, in ms, is closed with 4008. */
  maxLag: number;
  now: () => number;
}

/**
 * The fan-out: on each phase, the slices due get what changed since they last heard from the hub, one frame per
 * cohort (clients holding the same view), built by the group's protocol and handed to every socket in it; it also
 * sends snapshots, holds them back for a full socket buffer, and trims the journal no client needs any more.
 */
export class FanOut {
  /** Clients with a snapshot held back for a full socket buffer: each phase of their type retries. */
  private readonly pendingSnapshots = new Set<HubClient>();
  private readonly state: StateStore;
  private readonly groups: Groups;
  private readonly sessions: Sessions;
  private readonly stats: HubStats;
  private readonly errors: ErrorReport;
  private readonly options: FanOutOptions;

  constructor(
    state: StateStore,
    groups: Groups,
    sessions: Sessions,
    stats: HubStats,
    errors: ErrorReport,
    options: FanOutOptions,
  ) {
    this.state = state;
    this.groups = groups;
    this.sessions = sessions;
    this.stats = stats;
    this.errors = errors;
    this.options = options;
  }

  /**
   * One phase of a client type's interval: every slice due in it (whole groups dealt to this phase, and this
   * phase's share of each spread group) is sent what changed since it last heard from the hub. A client is in one
   * slice, and every slice comes round once per interval, so each client still gets at most one update per
   * interval, always the latest state. Returns false when the phase failed outside any one group.
   */
  phase(type: ClientType, phase: number): boolean {
    // An error costs the group (or client) it happened in, never the other groups, the timer or the process.
    try {
      const sequence = this.state.sequence;
      for (const group of this.groups.values()) {
        if (group.type !== type) continue;
        // Shared by the clients that subscribed since the last phase; kept no longer, it can be large.
        group.snapshot = undefined;
        const due = group.slicesDue(phase).filter((slice) => group.minScannedByPhase[slice] < sequence);
        if (due.length === 0) continue;
        try {
          this.broadcast(group, due, sequence);
        } catch (error) {
          this.errors.failed('broadcast', error, { group: group.key });
        }
      }
      if (this.pendingSnapshots.size > 0) this.sendPendingSnapshots(type);
      this.state.trimJournal(this.groups.minScanned(this.state.sequence));
      return true;
    } catch (error) {
      this.errors.failed('tick', error, { client_type: type });
      return false;
    }
  }

  /** Sends the clients of the given slices of a group, one frame per cohort. */
  private broadcast(group: Group, slices: number[], sequence: number): void {
    // Clients normally all hold the same view; those that do not (just subscribed, or skipped while their
    // buffer was full) get their own patch, from their own sequence: one merged diff, never a backlog.
    const cohorts = new Map<string, HubClient[]>();
    const now = this.options.now();
    for (const slice of slices) this.addToCohorts(cohorts, group.byPhase[slice], sequence, now);
    for (const clients of cohorts.values()) {
      const { sequence: base, scanned } = clients[0];
      let frames: Frames;
      try {
        const changes = this.state.changesSince(scanned, group.filter);
        if (changes === undefined) {
          for (const client of clients) client.scanned = sequence;
          continue;
        }
        frames =
          changes === TOO_OLD
            ? this.groupSnapshot(group)
            : group.protocol.change({
                sequence,
                baseSequence: base,
                at: now,
                changes,
                view: () => this.state.snapshot(group.filter),
                entry: (topic, key) => this.state.get(topic, key),
                before: (topic, key) => this.state.valueAt(scanned, topic, key),
              });
      } catch (error) {
        // A value that cannot be diffed or encoded: these clients cannot be brought up to date, and keeping them
        // would fail again at every tick and hold the journal. They reconnect (1011) for a fresh snapshot.
        this.errors.failed('broadcast', error, { group: group.key, clients: clients.length });
        for (const client of clients)
          this.sessions.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
        continue;
      }
      // A protocol with nothing to say about this change sends nothing; its clients are up to date all the same.
      if (frames !== undefined) this.stats.broadcasts[group.type]++;
      for (const client of clients) {
        if (frames !== undefined) this.sendFrames(client, frames);
        client.sequence = sequence;
        client.scanned = sequence;
      }
    }
    for (const slice of slices) {
      let lowest = sequence;
      for (const client of group.byPhase[slice]) {
        // A client waiting for a snapshot needs no journal: it will be sent the whole view.
        if (!client.pendingSnapshot) lowest = Math.min(lowest, client.scanned);
      }
      group.minScannedByPhase[slice] = lowest;
    }
  }

  /** Sorts clients that are behind `sequence` into cohorts by the view they hold; slow ones are skipped. */
  private addToCohorts(
    cohorts: Map<string, HubClient[]>,
    clients: Set<HubClient>,
    sequence: number,
    now: number,
  ): void {
    let common: HubClient[] | undefined;
    for (const client of clients) {
      // A client waiting for a snapshot gets it, not a diff, once it drains (sendPendingSnapshots).
      if (client.scanned >= sequence || client.pendingSnapshot) continue;
      if (this.lagging(client, now)) continue;
      // Nearly every client holds the view of the first one seen: no key to build for those.
      if (common && client.sequence === common[0].sequence && client.scanned === common[0].scanned) {
        common.push(client);
        continue;
      }
      const key = `${client.sequence}/${client.scanned}`;
      const cohort = cohorts.get(key);
      if (cohort) cohort.push(client);
      else cohorts.set(key, [client]);
      common ??= cohorts.get(key);
    }
  }

  /**
   * Whether the client's socket buffer is over websocket.max_buffered: it is skipped (counted), and closed with
   * 4008 once it has been behind for longer than websocket.max_lag.
   */
  private lagging(client: HubClient, now: number): boolean {
    if (client.socket.bufferedAmount <= this.options.maxBuffered) {
      client.behindSince = undefined;
      return false;
    }
    this.stats.slowConsumerSkips++;
    client.behindSince ??= now;
    if (now - client.behindSince > this.options.maxLag)
      this.sessions.close(client, CloseCode.SLOW_CONSUMER, 'slow_consumer');
    return true;
  }

  /** The group's snapshot of the current state, built by its protocol once per state sequence. */
  private groupSnapshot(group: Group): Frames {
    const sequence = this.state.sequence;
    if (group.snapshot?.sequence !== sequence) {
      const frames = group.protocol.snapshot({
        sequence,
        epoch: this.state.epoch,
        at: this.options.now(),
        data: this.state.snapshot(group.filter),
        entry: (topic, key) => this.state.get(topic, key),
      });
      group.snapshot = { sequence, frames };
    }
    return group.snapshot.frames;
  }

  /**
   * Sends the client its group's snapshot now, or, while its socket buffer is over websocket.max_buffered, holds
   * it back (one per client, however many are asked for) until a tick finds the buffer drained: a client that
   * does not read cannot make the hub queue snapshot after snapshot.
   */
  sendSnapshot(client: HubClient): void {
    if (!client.group) return;
    if (client.socket.bufferedAmount > this.options.maxBuffered) {
      if (!client.pendingSnapshot) {
        client.pendingSnapshot = true;
        this.pendingSnapshots.add(client);
        this.stats.deferredSnapshots++;
      }
      return;
    }
    this.cancelSnapshot(client);
    this.sendFrames(client, this.groupSnapshot(client.group));
    client.sequence = this.state.sequence;
    client.scanned = this.state.sequence;
  }

  /** The snapshots held back for a full buffer, for clients of `type` whose buffer has drained since. */
  private sendPendingSnapshots(type: ClientType): void {
    const now = this.options.now();
    for (const client of [...this.pendingSnapshots]) {
      if (client.type !== type || this.lagging(client, now)) continue;
      this.cancelSnapshot(client);
      try {
        this.sendSnapshot(client);
      } catch (error) {
        this.errors.failed('snapshot', error, { client: client.id });
        this.sessions.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
      }
    }
  }

  /** Drops a snapshot held back for the client (it left, or has nothing to be sent any more). */
  cancelSnapshot(client: HubClient): void {
    client.pendingSnapshot = false;
    this.pendingSnapshots.delete(client);
  }

  /** A reply to one client, in its protocol. Returns false when its protocol has no message for it. */
  reply(client: HubClient, reply: Reply): boolean {
    const frames = client.protocol.reply(reply);
    this.sendFrames(client, frames);
    return frames !== undefined;
  }

  /** What a protocol built for one client: nothing, one frame, or several in order. */
  sendFrames(client: HubClient, frames: Frames): void {
    if (frames === undefined) return;
    if (Buffer.isBuffer(frames)) this.send(client, frames);
    else for (const frame of frames as readonly Buffer[]) this.send(client, frame);
  }

  /** The one place a frame goes to a socket; a socket that throws is dropped, the others go on. */
  send(client: HubClient, frame: Buffer): void {
    if (client.socket.readyState !== OPEN) return;
    try {
      client.socket.send(frame, client.sendOptions);
    } catch (error) {
      this.errors.failed('send', error, { client: client.id });
      this.sessions.terminate(client);
      return;
    }
    client.sentSincePing = true;
    const bytes = this.stats.sentBytes[client.type];
    bytes[client.format] = (bytes[client.format] ?? 0) + frame.length;
    this.stats.sentMessages[client.type]++;
    const byProtocol = this.stats.sentByProtocol[client.type];
    let sent = byProtocol[client.protocol.name];
    if (sent === undefined) {
      // Once per protocol and client type: the send loop only adds to it.
      sent = { bytes: 0, messages: 0 };
      byProtocol[client.protocol.name] = sent;
    }
    sent.bytes += frame.length;
    sent.messages++;
  }
}
