import type { FastifyInstance } from 'fastify';
import type { SourceName } from '../../src/backends.ts';
import type { JsonObject } from '../../src/merge-patch.ts';
import type { PolledSource } from '../../src/poller.ts';

/**
 * Config and driving helpers for the backend poller tests. The sources in these tests use a long interval
 * unless a test is about the schedule: polls are then driven by the test through `PolledSource.poll()`, which
 * resolves once the poll's result is recorded.
 */

export interface SourceOverrides {
  interval?: string;
  timeout?: string;
  api_key?: string;
  breaker?: Partial<{
    error_threshold_percentage: number;
    volume_threshold: number;
    reset_timeout: string;
    rolling_window: string;
  }>;
  limit?: number;
  account_id?: string;
}

/**
 * A backend_services.<name> section with a quick breaker. The timeout is a second unless a test sets a short
 * one (tests of hanging backends do): a first gRPC call on a loaded machine can take a few hundred ms.
 */
export function sourceConfig(
  url: string | undefined,
  overrides: SourceOverrides = {},
): Record<string, unknown> {
  const { breaker, ...rest } = overrides;
  return {
    ...(url === undefined ? {} : { url }),
    interval: '1h',
    timeout: '1s',
    ...rest,
    breaker: {
      error_threshold_percentage: 50,
      volume_threshold: 2,
      reset_timeout: '300ms',
      rolling_window: '10s',
      ...breaker,
    },
  };
}

export function source(app: FastifyInstance, name: SourceName): PolledSource {
  const found = app.poller.sources.get(name);
  if (!found) throw new Error(`source ${name} is not configured`);
  return found;
}

/**
 * One poll that starts after this call: a poll already under way (begun before the test changed the backend)
 * is awaited first, so the result recorded is that of a request sent now.
 */
export async function freshPoll(app: FastifyInstance, name: SourceName): Promise<void> {
  const polled = source(app, name);
  // A poll that starts fires its breaker synchronously inside poll(); joining one under way does not.
  let started = false;
  const onFire = () => {
    started = true;
  };
  polled.breaker.on('fire', onFire);
  const poll = polled.poll();
  polled.breaker.off('fire', onFire);
  await poll;
  if (!started) await polled.poll();
}

/** `system.sources.<name>` as the state holds it. */
export function stateStatus(app: FastifyInstance, name: SourceName): JsonObject | undefined {
  const system = app.state.get('system') as JsonObject | undefined;
  return (system?.sources as JsonObject | undefined)?.[name] as JsonObject | undefined;
}

/** `sources.<name>` of a client's view of `system`. */
export function viewStatus(data: JsonObject, name: SourceName): JsonObject | undefined {
  return ((data.system as JsonObject | undefined)?.sources as JsonObject | undefined)?.[name] as
    | JsonObject
    | undefined;
}

/** A keyed section of a client's view (`orders`, `positions`, `strategies`). */
export function section(data: JsonObject, topic: string): JsonObject {
  return (data[topic] as JsonObject | undefined) ?? {};
}
