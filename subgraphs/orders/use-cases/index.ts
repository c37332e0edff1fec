/** The orders context's use cases, bound to their dependencies once per process. */
import type { Causation } from '../../../platform/events/envelope.ts';
import type { Identity } from '../../../platform/identity/identity.ts';
import type { Order } from '../domain/order.ts';
import { cancelOrder, type CancelOrderDependencies } from './cancel-order.ts';
import { placeOrder, type PlaceOrderDependencies, type PlaceOrderInput } from './place-order.ts';

export interface OrdersUseCases {
  placeOrder(customerId: string, input: PlaceOrderInput, causation: Causation): Promise<Order>;
  cancelOrder(identity: Identity, orderId: string, causation: Causation): Promise<Order>;
}

export function ordersUseCases(deps: PlaceOrderDependencies & CancelOrderDependencies): OrdersUseCases {
  return {
    placeOrder: (customerId, input, causation) => placeOrder(deps, customerId, input, causation),
    cancelOrder: (identity, orderId, causation) => cancelOrder(deps, identity, orderId, causation),
  };
}
