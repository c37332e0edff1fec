/**
 * A consumer's handling of an event, in the log scope of the request that caused it: every line
 * the handler writes carries the event's correlation id as `requestId` (the id of the request
 * behind it, across every context the event reaches) and the trace id of its `traceparent`, and a
 * `debug` line says the event was handled, by which consumer and how long it took. Failures are
 * the bus's to report (redelivery, dead letter); this line only says one happened.
 */
import type { EventEnvelope } from '../events/envelope.ts';
import { errorFields, createLogger, type Logger } from './logger.ts';
import { inEventLogScope } from './request-scope.ts';

export function loggedEventHandler<R extends unknown[]>(
  consumer: string,
  handle: (event: EventEnvelope, ...rest: R) => Promise<void>,
  log: Logger = createLogger(`${consumer}.consumer`),
): (event: EventEnvelope, ...rest: R) => Promise<void> {
  return inEventLogScope(async (event: EventEnvelope, ...rest: R) => {
    const startedAt = performance.now();
    const fields = () => ({ consumer, eventType: event.type, eventId: event.eventId, durationMs: Math.round((performance.now() - startedAt) * 10) / 10 });
    try {
      await handle(event, ...rest);
      log.debug('event handled', fields());
    } catch (error) {
      log.debug('event handling failed', { ...fields(), ...errorFields(error) });
      throw error;
    }
  });
}
