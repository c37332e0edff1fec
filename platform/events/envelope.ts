/**
 * The envelope every domain event travels in, on every bus. Past-tense `type`, the aggregate it
 * is about and its version there (consumers use it to ignore stale and detect missing events),
 * and the ids that tie an event to the request and the event that caused it.
 */
import { randomUUID } from 'node:crypto';

export interface EventEnvelope<TPayload = Record<string, unknown>> {
  /** UUID; also the broker's de-duplication id and the consumers' inbox key. */
  eventId: string;
  /** Past tense, e.g. `ProductCreated`. */
  type: string;
  /** The bounded context that published it, e.g. `catalog`. */
  source: string;
  aggregateType: string;
  aggregateId: string;
  /** 1 for the aggregate's first event, then +1 per event of that aggregate. */
  aggregateVersion: number;
  /** ISO 8601. */
  occurredAt: string;
  /** Version of the payload's shape for this `type`. */
  schemaVersion: number;
  /** Shared by everything one client request led to. */
  correlationId: string;
  /** The id of the request or event that directly caused this one. */
  causationId: string;
  /** W3C trace context of the causing request, when there was one. */
  traceparent: string | null;
  payload: TPayload;
}

/** What caused a change: the request (or event) whose ids the new events carry on. */
export interface Causation {
  correlationId: string;
  causationId: string;
  traceparent?: string | null;
}

export interface NewEvent<TPayload = Record<string, unknown>> {
  type: string;
  aggregateType: string;
  aggregateId: string;
  aggregateVersion: number;
  payload: TPayload;
  /** @default 1 */
  schemaVersion?: number;
}

export function createEnvelope<TPayload>(source: string, event: NewEvent<TPayload>, causation: Causation, now: Date = new Date()): EventEnvelope<TPayload> {
  return {
    eventId: randomUUID(),
    type: event.type,
    source,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    aggregateVersion: event.aggregateVersion,
    occurredAt: now.toISOString(),
    schemaVersion: event.schemaVersion ?? 1,
    correlationId: causation.correlationId,
    causationId: causation.causationId,
    traceparent: causation.traceparent ?? null,
    payload: event.payload,
  };
}

/** The causation of the events an event handler emits in turn. */
export function causedBy(event: EventEnvelope): Causation {
  return { correlationId: event.correlationId, causationId: event.eventId, traceparent: event.traceparent };
}

/** Subject (NATS) / topic (pg-boss) of an event: `events.<source>.<aggregateType>.<type>`. */
export function subjectOf(event: Pick<EventEnvelope, 'source' | 'aggregateType' | 'type'>): string {
  return `events.${event.source}.${event.aggregateType}.${event.type}`;
}
