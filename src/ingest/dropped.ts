/** The one log line for a message ingest dropped, whatever carried it (Redis, NATS): rate-limited per topic. */
import type { LogThrottle } from '../log-throttle.ts';
import { PayloadError } from './schemas.ts';

/** The part of a logger this needs (pino's, Fastify's). */
export interface DropLogger {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/**
 * Logs why a message was dropped: a PayloadError (invalid, or refused by a limit) as a warning, anything else (a
 * bug: nothing a publisher sends may take the hub down) as an error; at most one line per topic per window.
 */
export function logDropped(
  log: DropLogger,
  throttle: LogThrottle,
  where: Record<string, string>,
  error: unknown,
): void {
  const topic = error instanceof PayloadError ? error.topic : 'unexpected';
  const suppressed = throttle.allow(topic);
  if (suppressed === undefined) return;
  if (error instanceof PayloadError) {
    log.warn({ ...where, suppressed }, `ingest: dropped message: ${error.message}`);
  } else {
    log.error({ ...where, suppressed, err: error }, 'ingest: message handling failed; dropped');
  }
}
