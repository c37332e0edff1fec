/** GraphQL → shipping. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { invalidInput } from '../../platform/errors/domain-error.ts';
import { forbidden } from '../../platform/errors/index.ts';
import { isAdmin, requireAdmin, type Identity } from '../../platform/identity/identity.ts';
import { isUuid } from '../../platform/ids.ts';
import type { ShippingContext } from './context.ts';
import type { ShipmentStatus } from './domain/shipment.ts';
import type { ShipmentStatusChange, ShipmentView } from './infrastructure/shipment-repository.ts';

interface OrderShipment {
  id: string;
  shipment: ShipmentView | null;
}

/** A shipment is as private as its order: only the order's customer and admins may read it. */
function assertMayRead(identity: Identity, shipment: ShipmentView): void {
  if (identity.customerId !== shipment.customerId && !isAdmin(identity)) throw forbidden('You can only see the shipments of your own orders');
}

export const resolvers: GraphQLResolverMap<ShippingContext> = {
  Mutation: {
    advanceShipment: (_root, args: { orderId: string; to: ShipmentStatus }, ctx) => {
      requireAdmin(ctx.identity);
      if (!isUuid(args.orderId)) throw invalidInput('orderId is not a valid id', 'orderId');
      return ctx.shipments.advance(args.orderId, args.to, ctx.causation, ctx.clock());
    },
  },
  Order: {
    // Loads here rather than in `shipment` so that every reference of a fetch joins one batch.
    __resolveReference: async (reference: { id: string }, ctx: ShippingContext): Promise<OrderShipment> => ({
      id: reference.id,
      shipment: await ctx.shipmentLoader.load(reference.id),
    }),
    shipment: (order: OrderShipment, _args, ctx) => {
      if (!order.shipment) return null;
      assertMayRead(ctx.identity, order.shipment);
      return order.shipment;
    },
  },
  ShipmentStatusChange: {
    at: (change: ShipmentStatusChange) => change.at.toISOString(),
  },
};
