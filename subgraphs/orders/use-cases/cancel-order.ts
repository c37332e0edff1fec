/**
 * A customer (or an admin) cancels an order. Whether it can be cancelled is the aggregate's
 * rule (CONFLICT otherwise), checked before anything is asked; how the cancellation happens is
 * `requestCancellation`'s business: by default the order is cancelled at once, the saga replaces
 * that with its compensations.
 */
import { notFoundError } from '../../../platform/errors/domain-error.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { isAdmin, requireSignedIn, type Identity } from '../../../platform/identity/identity.ts';
import { decide, type Order, type OrderCommand, type OrderState } from '../domain/order.ts';
import type { OrderStore } from '../infrastructure/order-store.ts';

/**
 * Asks for the order to be cancelled. Resolves with the order's state when it has it (else the
 * order is read again); rejects with the aggregate's CONFLICT when it cannot be cancelled.
 */
export type RequestCancellation = (orderId: string, causation: Causation) => Promise<OrderState | void>;

export interface CancelOrderDependencies {
  store: OrderStore;
  clock: () => Date;
  requestCancellation: RequestCancellation;
}

export const customerCancellation = (at: Date): OrderCommand => ({ type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', at: at.toISOString() });

/** The default: CancelOrder CUSTOMER_CANCELLED on the aggregate, right away. */
export function cancelDirectly(store: OrderStore, clock: () => Date): RequestCancellation {
  return async (orderId, causation) => (await store.execute(orderId, customerCancellation(clock()), causation)).order;
}

export async function cancelOrder(deps: CancelOrderDependencies, identity: Identity, orderId: string, causation: Causation): Promise<Order> {
  const customerId = requireSignedIn(identity);
  const { order } = await deps.store.load(orderId);
  // Someone else's order answers as a missing one: its existence is not the caller's business.
  if (!order || (order.customerId !== customerId && !isAdmin(identity))) throw notFoundError('No such order');
  decide(customerCancellation(deps.clock()), order);
  const cancelled = await deps.requestCancellation(orderId, causation);
  return cancelled ?? (await deps.store.load(orderId)).order!;
}
