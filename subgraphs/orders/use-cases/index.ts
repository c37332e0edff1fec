/** The orders context's use cases, bound to their dependencies once per process. */
import type { Causation } from '../../../platform/events/envelope.ts';
import type { Identity } from '../../../platform/identity/identity.ts';
import type { Order } from '../domain/order.ts';
import { cancelOrder, type CancelOrderDependencies } from './cancel-order.ts';
import { placeOrder, type PlaceOrderDependencies, type PlaceOrderInput } from './place-order.ts';
import { receiveReturn, requestReturn, type ReturnDependencies } from './returns.ts';

export interface OrdersUseCases {
  placeOrder(customerId: string, input: PlaceOrderInput, causation: Causation): Promise<Order>;
  cancelOrder(identity: Identity, orderId: string, causation: Causation): Promise<Order>;
  requestReturn(identity: Identity, orderId: string, causation: Causation): Promise<Order>;
  receiveReturn(identity: Identity, orderId: string, causation: Causation): Promise<Order>;
}

export function ordersUseCases(deps: PlaceOrderDependencies & CancelOrderDependencies & ReturnDependencies): OrdersUseCases {
  return {
    placeOrder: (customerId, input, causation) => placeOrder(deps, customerId, input, causation),
    cancelOrder: (identity, orderId, causation) => cancelOrder(deps, identity, orderId, causation),
    requestReturn: (identity, orderId, causation) => requestReturn(deps, identity, orderId, causation),
    receiveReturn: (identity, orderId, causation) => receiveReturn(deps, identity, orderId, causation),
  };
}
