/** Placing an order and following its status live (orders context, through the gateway). */
import { gql, type ApolloClient } from '@apollo/client';
import type { CartLine, Checkout } from './cart.ts';
import { problemOf } from './gateway.ts';

export interface ShippingAddress {
  name: string;
  line1: string;
  line2?: string;
  city: string;
  postalCode: string;
  /** ISO 3166-1 alpha-2. */
  country: string;
}

export interface OrderState {
  id: string;
  status:
    | 'PENDING'
    | 'CONFIRMED'
    | 'REJECTED'
    | 'CANCELLING'
    | 'CANCELLED'
    | 'SHIPPED'
    | 'DELIVERED'
    | 'RETURN_REQUESTED'
    | 'RETURN_RECEIVED'
    | 'REFUNDED'
    | 'REFUND_FAILED';
  reason: string | null;
  total: number;
  currency: string;
  updatedAt: string;
}

const orderFields = 'id status reason total currency updatedAt';

const placeOrderMutation = gql`
  mutation PlaceOrder($input: PlaceOrderInput!) {
    placeOrder(input: $input) { ${orderFields} }
  }
`;

const orderStatusSubscription = gql`
  subscription OrderStatus($orderId: ID!) {
    orderStatusChanged(orderId: $orderId) { ${orderFields} }
  }
`;

/** Refusals worth sending again with the same idempotency key. */
const retryable = new Set(['SERVICE_OVERLOADED', 'NETWORK_ERROR', 'HTTP_502', 'HTTP_503', 'HTTP_504']);

export async function placeOrder(
  client: ApolloClient,
  checkout: Checkout,
  order: { lines: CartLine[]; shippingAddress: ShippingAddress; paymentToken: string },
  attempts = 3,
): Promise<OrderState> {
  const input = {
    lines: order.lines.map((line) => ({ productId: line.product.id, quantity: line.quantity })),
    shippingAddress: order.shippingAddress,
    paymentToken: order.paymentToken,
    idempotencyKey: checkout.idempotencyKey,
  };
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await client.mutate<{ placeOrder: OrderState }>({ mutation: placeOrderMutation, variables: { input } });
      return result.data!.placeOrder;
    } catch (error) {
      if (attempt >= attempts || !retryable.has(problemOf(error).code)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

/** Calls `onChange` with the order as it is, then at each new status; returns the way to stop. */
export function followOrder(client: ApolloClient, orderId: string, onChange: (order: OrderState) => void, onError: (error: unknown) => void): () => void {
  const subscription = client.subscribe<{ orderStatusChanged: OrderState }>({ query: orderStatusSubscription, variables: { orderId } }).subscribe({
    next: (result) => {
      if (result.error) onError(result.error);
      else if (result.data) onChange(result.data.orderStatusChanged);
    },
    error: onError,
  });
  return () => subscription.unsubscribe();
}

/** Statuses after which nothing more happens to an order unless someone acts on it. */
export const settledStatuses = new Set(['REJECTED', 'CANCELLED', 'DELIVERED', 'REFUNDED', 'REFUND_FAILED']);
