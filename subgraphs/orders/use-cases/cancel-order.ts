/**
 * A customer (or an admin) asks to cancel an order. Whether it may be asked is the aggregate's
 * rule (CANCELLATION_REFUSED once dispatched, CONFLICT when it is over), checked before anything
 * is written; how the request is resolved is `requestCancellation`'s business: without a saga
 * the order is cancelled at once, the saga makes it a request shipping answers
 * (docs/decisions/0030).
 */
import { notFoundError } from '../../../platform/errors/domain-error.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { isAdmin, requireSignedIn, type Identity } from '../../../platform/identity/identity.ts';
import { decide, type Order, type OrderState } from '../domain/order.ts';
import type { OrderStore } from '../infrastructure/order-store.ts';

/**
 * Records the request and resolves it as far as it can at once. Resolves with the order's state
 * when it has it (else the order is read again); rejects with the aggregate's refusal.
 */
export type RequestCancellation = (orderId: string, causation: Causation) => Promise<OrderState | void>;

export interface CancelOrderDependencies {
  store: OrderStore;
  clock: () => Date;
  requestCancellation: RequestCancellation;
}

/** Without a saga: the request and the cancellation in one transaction. */
export function cancelDirectly(store: OrderStore, clock: () => Date): RequestCancellation {
  return async (orderId, causation) => {
    let cancelled: OrderState = null;
    const requested = await store.execute(orderId, { type: 'RequestCancellation', at: clock().toISOString() }, causation, async (tx, change) => {
      if (change.events.length === 0) return;
      cancelled = (await store.executeInTransaction(tx, orderId, { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', at: clock().toISOString() }, causation)).order;
    });
    return cancelled ?? requested.order;
  };
}

/** The caller's order (any for admins); someone else's answers as a missing one: its existence is not the caller's business. */
export async function ownOrder(store: OrderStore, identity: Identity, orderId: string): Promise<Order> {
  const customerId = requireSignedIn(identity);
  const { order } = await store.load(orderId);
  if (!order || (order.customerId !== customerId && !isAdmin(identity))) throw notFoundError('No such order');
  return order;
}

export async function cancelOrder(deps: CancelOrderDependencies, identity: Identity, orderId: string, causation: Causation): Promise<Order> {
  const order = await ownOrder(deps.store, identity, orderId);
  if (decide({ type: 'RequestCancellation', at: deps.clock().toISOString() }, order).length === 0) return order; // CANCELLING already
  const resolved = await deps.requestCancellation(orderId, causation);
  return resolved ?? (await deps.store.load(orderId)).order!;
}
