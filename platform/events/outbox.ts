/**
 * The transactional outbox: events are rows written in the same database transaction as the
 * state change they record, so they are committed with it or not at all. The outbox relay
 * (relay.ts) publishes them afterwards. Every context has the same `outbox_events` table.
 */
import { subjectOf, type EventEnvelope } from './envelope.ts';

/**
 * What the outbox needs of a Prisma interactive transaction: any context's `tx` (from
 * `db.$transaction(async (tx) => …)`) fits, whichever generated client it comes from.
 */
export interface OutboxTransaction {
  $executeRaw(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<number>;
}

/**
 * Appends events to the outbox inside the caller's transaction, in the given order (the relay
 * publishes a transaction's events in that order). Call it with the transaction that changes
 * the aggregate: never with the bare client, or the event would commit on its own.
 *
 * @example
 * await db.$transaction(async (tx) => {
 *   const product = await tx.product.update({ where: { id }, data: { priceAmount, version: { increment: 1 } } });
 *   await appendToOutbox(tx, [createEnvelope('catalog', { type: 'ProductPriceChanged', aggregateType: 'Product',
 *     aggregateId: id, aggregateVersion: product.version, payload: { priceAmount } }, causation)]);
 * });
 */
export async function appendToOutbox(tx: OutboxTransaction, envelopes: readonly EventEnvelope<unknown>[]): Promise<void> {
  if (envelopes.length === 0) return;
  const eventIds = envelopes.map((e) => e.eventId);
  const subjects = envelopes.map((e) => subjectOf(e));
  const bodies = envelopes.map((e) => JSON.stringify(e));
  // One statement for the whole list; WITH ORDINALITY + ORDER BY makes the ids (the relay's
  // order within a transaction) follow the list's order. tx_id defaults to the transaction's id.
  await tx.$executeRaw`
    INSERT INTO outbox_events (event_id, subject, envelope)
    SELECT e.event_id, e.subject, e.envelope
    FROM unnest(${eventIds}::uuid[], ${subjects}::text[], ${bodies}::jsonb[])
      WITH ORDINALITY AS e(event_id, subject, envelope, position)
    ORDER BY e.position`;
}
