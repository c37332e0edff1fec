/**
 * Traces through the event bus (docs/decisions/0036). An event's envelope carries the W3C
 * `traceparent` of what caused it (the subgraph request's span, or the consumer span that handled
 * the event before): the relay's publish is a span under it, and the event goes out naming that
 * span; a consumer's handling is a span under the publish, and what the handler does next — the
 * saga's next command, a reply — carries the handling span on. One trace then runs from the
 * client's request through every event it causes, in every context.
 *
 * Only when tracing is enabled: otherwise both wrappers return what they were given, and events
 * keep the `traceparent` of the request that caused them, as before.
 */
import type { EventHandler } from '../events/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { inSpan, SpanKind, traceparentOf, tracerOf, tracingEnabled } from './tracing.ts';

/** Wraps the relay's publish of `service`'s outbox: a producer span per event published. */
export function tracedPublish(service: string, publish: (event: EventEnvelope) => Promise<void>): (event: EventEnvelope) => Promise<void> {
  if (!tracingEnabled()) return publish;
  const tracer = tracerOf(service);
  return (event) =>
    inSpan(tracer, `publish ${event.type}`, event.traceparent, SpanKind.PRODUCER, (span) => publish({ ...event, traceparent: traceparentOf(span) ?? event.traceparent }), {
      'messaging.operation.type': 'send',
      'messaging.message.id': event.eventId,
      'messaging.destination.name': `${event.source}.${event.aggregateType}.${event.type}`,
    });
}

/** Wraps a consumer's handler in `service`: a consumer span per delivery, under the event's `traceparent`. */
export function tracedEventHandler(service: string, consumer: string, handle: EventHandler): EventHandler {
  if (!tracingEnabled()) return handle;
  const tracer = tracerOf(service);
  return (event, delivery) =>
    inSpan(tracer, `handle ${event.type}`, event.traceparent, SpanKind.CONSUMER, (span) => handle({ ...event, traceparent: traceparentOf(span) ?? event.traceparent }, delivery), {
      'messaging.operation.type': 'process',
      'messaging.consumer.group.name': consumer,
      'messaging.message.id': event.eventId,
      'messaging.delivery.attempt': delivery.attempt,
    });
}
