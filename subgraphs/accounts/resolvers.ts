/** GraphQL → use cases. Thin on purpose: validation and rules live in domain/ and use-cases/. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { forbidden } from '../../platform/errors/index.ts';
import { isAdmin, requireSignedIn, type Identity } from '../../platform/identity/identity.ts';
import { checkAddress, type AddressInput } from './domain/address.ts';
import type { AccountsContext } from './context.ts';
import type { CustomerRecord } from './infrastructure/customer-repository.ts';
import { signIn, signUp } from './use-cases/authenticate.ts';

/** Customers are private: only the customer themself and admins may read one. */
function assertMayRead(identity: Identity, customerId: string): void {
  if (identity.customerId !== customerId && !isAdmin(identity)) throw forbidden('You can only read your own account');
}

export const resolvers: GraphQLResolverMap<AccountsContext> = {
  Role: { CUSTOMER: 'customer', ADMIN: 'admin' } as never,
  Query: {
    me: (_root, _args, ctx) => (ctx.identity.customerId ? ctx.customerLoader.load(ctx.identity.customerId) : null),
  },
  Mutation: {
    signUp: (_root, args: { email: string; password: string; name: string }, ctx) => signUp(ctx, args),
    signIn: (_root, args: { email: string; password: string }, ctx) => signIn(ctx, args),
    addAddress: (_root, { input }: { input: AddressInput }, ctx) => {
      const customerId = requireSignedIn(ctx.identity);
      return ctx.customers.addAddress(customerId, checkAddress(input));
    },
    removeAddress: async (_root, { id }: { id: string }, ctx) => {
      await ctx.customers.removeAddress(requireSignedIn(ctx.identity), id);
      return true;
    },
  },
  Customer: {
    __resolveReference: (reference: { id: string }, ctx: AccountsContext) => {
      assertMayRead(ctx.identity, reference.id);
      return ctx.customerLoader.load(reference.id);
    },
    addresses: (customer: CustomerRecord, _args, ctx) => ctx.addressLoader.load(customer.id),
    createdAt: (customer: CustomerRecord) => customer.createdAt.toISOString(),
  },
};
