/** Recording what graphql-ws subscriptions receive, for tests of the orders subgraph and the gateway. */
import type { Client } from 'graphql-ws';

/** The example: one subscription to which orders, catalog, inventory, payments and shipping each contribute. */
export const watchOrder = `subscription WatchOrder($id: ID!) {
  orderStatusChanged(orderId: $id) {
    id
    status
    items { quantity product { name stock { available } } }
    payment { status }
    shipment { trackingNumber status }
  }
}`;

export interface Received {
  data: Record<string, any>[];
  errors: { message: string; extensions?: { code?: string } }[];
  completed: boolean;
  dispose: () => void;
}

/**
 * Subscribes and records every result. A refusal of the operation (graphql-ws `error`) is
 * recorded as its errors; a closed socket as one error with code `CLOSE_<code>`.
 */
export function recordSubscription(client: Client, query: string, variables: Record<string, unknown> = {}, extensions?: Record<string, unknown>): Received {
  const received: Received = { data: [], errors: [], completed: false, dispose: () => {} };
  received.dispose = client.subscribe<Record<string, any>>(
    { query, variables, ...(extensions ? { extensions } : {}) },
    {
      next: (result) => {
        if (result.data) received.data.push(result.data);
        if (result.errors) received.errors.push(...(result.errors as Received['errors']));
      },
      error: (error) => {
        if (Array.isArray(error)) received.errors.push(...(error as Received['errors']));
        else received.errors.push({ message: String((error as { reason?: string }).reason ?? error), extensions: { code: `CLOSE_${(error as { code?: number }).code}` } });
      },
      complete: () => {
        received.completed = true;
      },
    },
  );
  return received;
}
