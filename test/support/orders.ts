/** Orders placed and moved along through the gateway, as a client would. */
import { randomUUID } from 'node:crypto';
import { demoProducts } from '../../scripts/demo/data.ts';
import { graphql, graphqlRetryingOverload } from './graphql.ts';
import { waitFor } from './wait.ts';

export const inStockProducts = demoProducts.filter((p) => p.stock >= 20);
export const testAddress = { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

/** Places an order of `quantity` × the first well-stocked demo product; returns its id. */
export async function placeOrder(gatewayUrl: string, token: string, options: { paymentToken?: string; quantity?: number } = {}): Promise<string> {
  // Retried with the same idempotency key while the platform says SERVICE_OVERLOADED, as a client would.
  const response = await graphqlRetryingOverload(gatewayUrl, {
    query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`,
    variables: {
      input: {
        lines: [{ productId: inStockProducts[0]!.id, quantity: options.quantity ?? 1 }],
        shippingAddress: testAddress,
        paymentToken: options.paymentToken ?? 'tok_visa',
        idempotencyKey: randomUUID(),
      },
    },
    token,
  });
  if (response.errors) throw new Error(`placeOrder failed: ${JSON.stringify(response.errors)}`);
  return response.data!.placeOrder.id as string;
}

/** As admin (standing in for the carrier): moves the order's shipment to `to`. */
export async function advanceShipment(gatewayUrl: string, adminToken: string, orderId: string, to: 'DISPATCHED' | 'IN_TRANSIT' | 'DELIVERED'): Promise<void> {
  const response = await graphqlRetryingOverload(gatewayUrl, { query: `mutation ($id: ID!) { advanceShipment(orderId: $id, to: ${to}) { status } }`, variables: { id: orderId }, token: adminToken });
  if (response.errors) throw new Error(`advanceShipment failed: ${JSON.stringify(response.errors)}`);
}

/**
 * Dispatches, moves in transit and delivers the order's shipment, delivering only once the
 * payment is captured. Dispatch sends CapturePayment, which reaches payments in its own time: on a
 * busy machine that can take longer than two admin calls, and a DELIVERED event would then show
 * the payment still AUTHORIZED.
 */
export async function deliverOnceCaptured(gatewayUrl: string, adminToken: string, orderId: string): Promise<void> {
  await advanceShipment(gatewayUrl, adminToken, orderId, 'DISPATCHED');
  await advanceShipment(gatewayUrl, adminToken, orderId, 'IN_TRANSIT');
  await paymentCaptured(gatewayUrl, adminToken, orderId);
  await advanceShipment(gatewayUrl, adminToken, orderId, 'DELIVERED');
}

/** Waits until the order's payment reads CAPTURED (the capture dispatch sent has landed). */
export async function paymentCaptured(gatewayUrl: string, adminToken: string, orderId: string): Promise<void> {
  await waitFor('the payment captured', async () => {
    const read = await graphql(gatewayUrl, { query: 'query ($id: ID!) { order(id: $id) { payment { status } } }', variables: { id: orderId }, token: adminToken });
    return (read.data as { order?: { payment?: { status?: string } } } | undefined)?.order?.payment?.status === 'CAPTURED' ? true : undefined;
  });
}
