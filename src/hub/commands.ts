import type { Principal } from '../access.ts';
import type { ActionRequest, ActionSubmitter } from '../actions/types.ts';
import type { StateStore } from '../state.ts';
import { CloseCode } from './close-codes.ts';
import { type Command, ProtocolError } from './command.ts';
import type { FanOut } from './fan-out.ts';
import type { Groups } from './groups.ts';
import type { Protocols } from './protocols/index.ts';
import type { HubClient, Sessions } from './session.ts';
import { count, type ErrorReport, type HubStats } from './stats.ts';

export interface CommandOptions {
  /** Most subscription names one client may hold. */
  maxSubscriptions: number;
  /** Over `messagesPerSecond` a message gets `rate_limited`; more than `maxViolations` in `window` ms closes 4029. */
  rateLimit: { maxViolations: number; window: number };
  /** Whether a principal may read a subscription; everything when absent. */
  mayRead?: (principal: Principal, subscription: string) => boolean;
  /** Verifies a fresh token sent with `{"action":"auth"}`; throws an error with a `code` when it is not valid. */
  verifyToken?: (token: string) => Principal;
  /** The protocols a client's first message may switch it to. */
  protocols: Protocols;
  /** Who acts on trading actions; without it every action is refused. */
  actions?: ActionSubmitter;
  now: () => number;
}

/**
 * Client commands: each frame is rate-limited per socket, parsed by the client's protocol, and acted on:
 * subscribe and unsubscribe (checked against the role and the limit), resync, ping, and a token refresh.
 */
export class Commands {
  private readonly state: StateStore;
  private readonly sessions: Sessions;
  private readonly groups: Groups;
  private readonly fanOut: FanOut;
  private readonly stats: HubStats;
  private readonly errors: ErrorReport;
  private readonly options: CommandOptions;

  constructor(
    state: StateStore,
    sessions: Sessions,
    groups: Groups,
    fanOut: FanOut,
    stats: HubStats,
    errors: ErrorReport,
    options: CommandOptions,
  ) {
    this.state = state;
    this.sessions = sessions;
    this.groups = groups;
    this.fanOut = fanOut;
    this.stats = stats;
    this.errors = errors;
    this.options = options;
  }

  /** Handles one frame from a client; an unexpected failure closes that client only. */
  receive(client: HubClient, data: Buffer, binary: boolean): void {
    // A peer may go on sending after the hub closed it (close frames can be ignored): that client is gone.
    if (!this.sessions.clients.has(client)) return;
    client.lastSeenAt = this.options.now();
    if (client.choosing) this.choose(client, data, binary, client.choosing.typeGiven);
    if (!this.withinRate(client)) return;
    try {
      this.execute(client, client.protocol.parse(data, binary));
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.reject(client, error);
        return;
      }
      this.errors.failed(
        'message',
        error,
        { client: client.id },
        'client handler failed; closing that client',
      );
      this.sessions.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
    }
  }

  /** Takes a token from the client's bucket; over the limit too often within the window closes it (4029). */
  private withinRate(client: HubClient): boolean {
    if (client.bucket.take()) return true;
    const { maxViolations, window } = this.options.rateLimit;
    const now = this.options.now();
    if (now - client.violationWindowStart > window) {
      client.violationWindowStart = now;
      client.violations = 0;
    }
    client.violations++;
    if (client.violations > maxViolations) {
      this.sessions.close(client, CloseCode.RATE_LIMITED, 'rate_limited');
    } else {
      this.reject(client, new ProtocolError('rate_limited', 'too many messages; this one was ignored'));
    }
    return false;
  }

  /** A connection that named no protocol: its first message may switch it to a b25 client's protocol. */
  private choose(client: HubClient, data: Buffer, binary: boolean, typeGiven: boolean): void {
    client.choosing = false;
    const chosen = this.options.protocols.chosenBy(data, binary, client.type, typeGiven);
    if (!chosen) return;
    client.speak(chosen.protocol, chosen.type);
    if (client.group) this.groups.join(client, this.state.sequence);
  }

  private reject(client: HubClient, error: ProtocolError): void {
    count(this.stats.rejectedMessages, error.code);
    if (this.fanOut.reply(client, { type: 'error', code: error.code, message: error.message })) return;
    // A protocol with no error message (the b25 clients cannot read one): counted and logged instead.
    this.stats.unansweredRejections++;
    this.errors.refused(error.code, error.message, { client: client.id, protocol: client.protocol.name });
  }

  /** Acts on one command. Throws ProtocolError for one that is refused (nothing changes then). */
  execute(client: HubClient, command: Command): void {
    switch (command.action) {
      case 'subscribe': {
        const { mayRead } = this.options;
        const forbidden = mayRead
          ? command.subscriptions.filter((name) => !mayRead(client.principal, name))
          : [];
        if (command.lenient) {
          this.subscribeLeniently(client, command.subscriptions, forbidden);
          return;
        }
        if (forbidden.length > 0) {
          throw new ProtocolError(
            'forbidden_topic',
            `role ${client.principal.role} may not subscribe to ${forbidden.join(', ')}; nothing was added`,
          );
        }
        const added = command.subscriptions.filter((name) => !client.subscriptions.has(name)).length;
        if (client.subscriptions.size + added > this.options.maxSubscriptions) {
          throw new ProtocolError(
            'too_many_subscriptions',
            `at most ${this.options.maxSubscriptions} subscriptions per connection; nothing was added`,
          );
        }
        for (const name of command.subscriptions) client.subscriptions.add(name);
        this.regroup(client, 'subscribed');
        return;
      }
      case 'unsubscribe': {
        for (const name of command.subscriptions) client.subscriptions.delete(name);
        this.regroup(client, 'unsubscribed');
        return;
      }
      case 'resync':
        if (client.group) this.fanOut.sendSnapshot(client);
        return;
      case 'ping':
        this.fanOut.reply(client, { type: 'pong', at: this.options.now(), echo: command.echo });
        return;
      case 'auth':
        this.refreshToken(client, command.token);
        return;
      case 'trade':
        this.act(client, command.request, command.requestId);
        return;
      case 'none':
        return;
    }
  }

  /**
   * A b25 client's subscribe: it cannot act on a refusal, so what its role may not read is left out (counted and
   * logged as `forbidden_topic`), and only as many names as fit under websocket.max_subscriptions are taken.
   */
  private subscribeLeniently(client: HubClient, names: string[], forbidden: string[]): void {
    if (forbidden.length > 0) {
      count(this.stats.rejectedMessages, 'forbidden_topic');
      this.errors.refused(
        'forbidden_topic',
        `role ${client.principal.role} may not read ${forbidden.join(', ')}; left out of the subscribe`,
        { client: client.id, protocol: client.protocol.name },
      );
    }
    for (const name of names) {
      if (forbidden.includes(name) || client.subscriptions.has(name)) continue;
      if (client.subscriptions.size >= this.options.maxSubscriptions) break;
      client.subscriptions.add(name);
    }
    this.regroup(client, 'subscribed');
  }

  /** Hands a trading action to the actions plugin; its result goes back to the client, if it is still here. */
  private act(client: HubClient, request: ActionRequest, requestId: string | undefined): void {
    const reply = (result: Awaited<ReturnType<ActionSubmitter['submit']>>) => {
      if (this.sessions.clients.has(client))
        this.fanOut.reply(client, { type: 'action_result', result, requestId });
    };
    const { actions } = this.options;
    if (!actions) {
      reply({
        kind: request.kind,
        outcome: 'rejected',
        reason: 'actions are disabled (actions.enabled)',
        at: this.options.now(),
      });
      return;
    }
    actions.submit(client.principal, request).then(reply, (error: unknown) => {
      this.errors.failed('message', error, { client: client.id }, 'trading action failed');
      reply({ kind: request.kind, outcome: 'failed', reason: 'internal error', at: this.options.now() });
    });
  }

  /** A fresh token for the same user extends the session; anything else leaves it as it was. */
  private refreshToken(client: HubClient, token: string): void {
    if (!this.options.verifyToken) {
      this.fanOut.reply(client, {
        type: 'authenticated',
        userId: client.principal.userId,
        expiresAt: undefined,
      });
      return;
    }
    let principal: Principal;
    try {
      principal = this.options.verifyToken(token);
    } catch (error) {
      throw new ProtocolError(
        'invalid_token',
        `token refused: ${(error as Error).message}; the session is unchanged`,
      );
    }
    if (principal.userId !== client.principal.userId) {
      throw new ProtocolError('invalid_token', 'token is for another user; the session is unchanged');
    }
    client.principal = principal;
    this.sessions.scheduleExpiry(client);
    // A new role may allow less: drop what it no longer allows.
    const { mayRead } = this.options;
    const dropped = mayRead ? [...client.subscriptions].filter((name) => !mayRead(principal, name)) : [];
    for (const name of dropped) client.subscriptions.delete(name);
    this.fanOut.reply(client, {
      type: 'authenticated',
      userId: principal.userId,
      expiresAt: principal.expiresAt,
    });
    if (dropped.length > 0) this.regroup(client, 'unsubscribed');
  }

  /** After the subscription set changed: the client's new group, the reply with its set, its new view. */
  private regroup(client: HubClient, reply: 'subscribed' | 'unsubscribed'): void {
    this.groups.join(client, this.state.sequence);
    if (!client.group) this.fanOut.cancelSnapshot(client);
    this.fanOut.reply(client, {
      type: reply,
      subscriptions: [...client.subscriptions],
      sequence: this.state.sequence,
    });
    if (client.group) this.fanOut.sendSnapshot(client);
  }
}
