/**
 * Correlation and causation across a whole flow: one `placeOrder` request through the gateway
 * leads to the order's events, the saga's commands and the replies of inventory, payments and
 * shipping, in four databases. Every one of them must carry the request's id as its correlation
 * id and its trace context, and each must name the message that caused it.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContextName } from '../platform/contexts.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const address = { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

describe('correlation of one request through the order saga', () => {
  let stack: Stack;
  let customer: string;

  beforeAll(async () => {
    stack = await startStack({ eventBus: 'nats' });
    await seedDemoData(stack.databaseUrls);
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
  }, 120_000);
  afterAll(() => stack?.stop());

  /** Every outbox event of `context` about this order, oldest first. */
  async function outboxOf(context: ContextName, orderId: string): Promise<EventEnvelope[]> {
    const sql = new pg.Client({ connectionString: stack.databaseUrls[context] });
    await sql.connect();
    try {
      const { rows } = await sql.query<{ envelope: EventEnvelope }>(
        `SELECT envelope FROM outbox_events WHERE envelope->>'aggregateId' = $1 ORDER BY tx_id, id`,
        [orderId],
      );
      return rows.map((row) => row.envelope);
    } finally {
      await sql.end();
    }
  }

  it('carries the request id and the trace context from placeOrder through every command and reply, each caused by the message before it', async () => {
    const requestId = `req-${randomUUID()}`;
    const traceparent = `00-${randomUUID().replaceAll('-', '')}-${randomUUID().replaceAll('-', '').slice(0, 16)}-01`;
    const product = demoProducts.find((p) => p.stock >= 20)!;
    const placed = await graphql(stack.gatewayUrl, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`,
      variables: { input: { lines: [{ productId: product.id, quantity: 1 }], shippingAddress: address, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
      token: customer,
      headers: { 'x-request-id': requestId, traceparent },
    });
    expect(placed.errors).toBeUndefined();
    const orderId = placed.data!.placeOrder.id as string;
    await waitFor('the order CONFIRMED', async () => {
      const order = (await graphql(stack.gatewayUrl, { query: `{ order(id: "${orderId}") { status } }`, token: customer })).data?.order;
      return order?.status === 'CONFIRMED' ? order : undefined;
    });

    const [orders, inventory, payments, shipping] = await Promise.all([
      outboxOf('orders', orderId),
      outboxOf('inventory', orderId),
      outboxOf('payments', orderId),
      outboxOf('shipping', orderId),
    ]);
    const types = (events: EventEnvelope[]) => events.map((e) => e.type);
    expect(types(orders)).toEqual(expect.arrayContaining(['OrderPlaced', 'ReserveStock', 'AuthorizePayment', 'CreateShipment', 'OrderConfirmed']));
    expect(types(inventory)).toEqual(['StockReserved']);
    expect(types(payments)).toEqual(['PaymentAuthorized']);
    expect(types(shipping)).toEqual(['ShipmentCreated']);

    const all = [...orders, ...inventory, ...payments, ...shipping];
    for (const event of all) expect(event, event.type).toMatchObject({ correlationId: requestId, traceparent });

    const byType = new Map(all.map((event) => [event.type, event]));
    const causeOf = (type: string) => byType.get(type)!.causationId;
    // The request caused the order and its first command; each reply caused the next command.
    expect(causeOf('OrderPlaced')).toBe(requestId);
    expect(causeOf('ReserveStock')).toBe(requestId);
    expect(causeOf('StockReserved')).toBe(byType.get('ReserveStock')!.eventId);
    expect(causeOf('AuthorizePayment')).toBe(byType.get('StockReserved')!.eventId);
    expect(causeOf('PaymentAuthorized')).toBe(byType.get('AuthorizePayment')!.eventId);
    expect(causeOf('CreateShipment')).toBe(byType.get('PaymentAuthorized')!.eventId);
    expect(causeOf('ShipmentCreated')).toBe(byType.get('CreateShipment')!.eventId);
    expect(causeOf('OrderConfirmed')).toBe(byType.get('ShipmentCreated')!.eventId);
  });
});
