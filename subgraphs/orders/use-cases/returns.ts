/**
 * Returns: the customer asks within the return window after delivery; an admin (the warehouse)
 * records the parcel's arrival, which the saga turns into held stock and a refund
 * (docs/decisions/0030). The aggregate's rules decide both, before anything is written.
 */
import { DomainError } from '../../../platform/errors/domain-error.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { isAdmin, type Identity } from '../../../platform/identity/identity.ts';
import { decide, type Order, type OrderState } from '../domain/order.ts';
import type { OrderStore } from '../infrastructure/order-store.ts';
import { ownOrder } from './cancel-order.ts';

/** ORDER_RETURN_WINDOW_DAYS's default: the EU's 14-day withdrawal right, and the usual 30 days of merchants' policies. */
export const defaultReturnWindowDays = 30;

/** Records that the returned parcel arrived and starts the refund. Resolves with the order's state when it has it. */
export type ReceiveReturn = (orderId: string, causation: Causation) => Promise<OrderState | void>;

export interface ReturnDependencies {
  store: OrderStore;
  clock: () => Date;
  /** How long after delivery a return may be asked for, in ms. */
  returnWindowMs: number;
  receiveReturn: ReceiveReturn;
}

/** Without a saga: the arrival is recorded and nothing else happens (no refund). */
export function receiveDirectly(store: OrderStore, clock: () => Date): ReceiveReturn {
  return async (orderId, causation) => (await store.execute(orderId, { type: 'ReceiveReturn', at: clock().toISOString() }, causation)).order;
}

export async function requestReturn(deps: ReturnDependencies, identity: Identity, orderId: string, causation: Causation): Promise<Order> {
  await ownOrder(deps.store, identity, orderId);
  return (await deps.store.execute(orderId, { type: 'RequestReturn', at: deps.clock().toISOString(), windowMs: deps.returnWindowMs }, causation)).order!;
}

export async function receiveReturn(deps: ReturnDependencies, identity: Identity, orderId: string, causation: Causation): Promise<Order> {
  // The gateway enforces @requiresScopes; the subgraph keeps its own check (docs/decisions/0026).
  if (!isAdmin(identity)) throw new DomainError('FORBIDDEN', 'Only an admin can record a returned parcel');
  const { order } = await deps.store.load(orderId);
  if (!order) throw new DomainError('NOT_FOUND', 'No such order');
  if (decide({ type: 'ReceiveReturn', at: deps.clock().toISOString() }, order).length === 0) return order; // received already
  const received = await deps.receiveReturn(orderId, causation);
  return received ?? (await deps.store.load(orderId)).order!;
}
