/** GraphQL → payments. Read-only: payments change only through the order saga's commands. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { forbidden } from '../../platform/errors/index.ts';
import { isAdmin, type Identity } from '../../platform/identity/identity.ts';
import type { PaymentsContext } from './context.ts';
import type { Payment } from './domain/payment.ts';

interface OrderPayment {
  id: string;
  payment: Payment | null;
}

/** A payment is as private as its order: only the order's customer and admins may read it. */
function assertMayRead(identity: Identity, payment: Payment): void {
  if (identity.customerId !== payment.customerId && !isAdmin(identity)) throw forbidden('You can only see the payments of your own orders');
}

export const resolvers: GraphQLResolverMap<PaymentsContext> = {
  Order: {
    // Loads here rather than in `payment` so that every reference of a fetch joins one batch.
    __resolveReference: async (reference: { id: string }, ctx: PaymentsContext): Promise<OrderPayment> => ({
      id: reference.id,
      payment: await ctx.paymentLoader.load(reference.id),
    }),
    payment: (order: OrderPayment, _args, ctx) => {
      if (!order.payment) return null;
      assertMayRead(ctx.identity, order.payment);
      return order.payment;
    },
  },
  Payment: {
    authorizedAt: (payment: Payment) => payment.authorizedAt?.toISOString() ?? null,
    capturedAt: (payment: Payment) => payment.capturedAt?.toISOString() ?? null,
  },
};
