/** Orders placed and moved along through the gateway, as a client would. */
import { randomUUID } from 'node:crypto';
import { demoProducts } from '../../scripts/demo/data.ts';
import { graphql } from './graphql.ts';

export const inStockProducts = demoProducts.filter((p) => p.stock >= 20);
export const testAddress = { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

/** Places an order of `quantity` × the first well-stocked demo product; returns its id. */
export async function placeOrder(gatewayUrl: string, token: string, options: { paymentToken?: string; quantity?: number } = {}): Promise<string> {
  const response = await graphql(gatewayUrl, {
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
  const response = await graphql(gatewayUrl, { query: `mutation ($id: ID!) { advanceShipment(orderId: $id, to: ${to}) { status } }`, variables: { id: orderId }, token: adminToken });
  if (response.errors) throw new Error(`advanceShipment failed: ${JSON.stringify(response.errors)}`);
}
