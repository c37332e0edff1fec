/** Recording what graphql-ws subscriptions receive, for tests of the orders subgraph and the gateway. */
import type { Client } from 'graphql-ws';
import type { OrderEvent } from '../../subgraphs/orders/domain/order.ts';
import { countsOf } from '../../scripts/bench/chaos-invariants.ts';
import { projectStream } from '../../subgraphs/orders/projections/order-summary.ts';

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

/** The statuses an order went through: events that keep the status (its payment or parcel changed, docs/decisions/0031) collapsed. */
export const statusChanges = (statuses: readonly string[]): string[] => statuses.filter((status, index) => index === 0 || statuses[index - 1] !== status);

/** Where an order's stream is read: the OrderStore, or SQL on `order_events` when orders runs in another process. */
export interface OrderStreams {
  readStream(orderId: string): Promise<readonly (OrderEvent & { version: number })[]>;
}

/**
 * The statuses heard more often than the order's stream holds states with them: an event sent
 * twice (a replay, a renewal's overlap). Each version of the order is one event at most.
 */
export async function statusesHeardTwice(store: OrderStreams, orderId: string, heard: readonly string[]): Promise<string[]> {
  const inStream = countsOf(projectStream(orderId, await store.readStream(orderId)).timeline.map((entry) => entry.status));
  return [...countsOf(heard)].filter(([status, times]) => times > (inStream.get(status) ?? 0)).map(([status]) => status);
}
