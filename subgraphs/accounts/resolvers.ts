/** GraphQL → use cases. Thin on purpose: validation and rules live in domain/ and use-cases/. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { forbidden } from '../../platform/errors/index.ts';
import { toGlobalId } from '../../platform/graphql/global-ids.ts';
import { isAdmin, requireSignedIn, type Identity } from '../../platform/identity/identity.ts';
import { sessionEnded } from '../../platform/identity/session-headers.ts';
import { checkAddress, type AddressInput } from './domain/address.ts';
import type { AccountsContext } from './context.ts';
import type { CustomerRecord } from './infrastructure/customer-repository.ts';
import { changePassword } from './use-cases/change-password.ts';
import type { IssuedSession } from './use-cases/open-session.ts';
import { refreshSession } from './use-cases/refresh-session.ts';
import { signIn } from './use-cases/sign-in.ts';
import { signOut } from './use-cases/sign-out.ts';
import { signUp } from './use-cases/sign-up.ts';

/** Customers are private: only the customer themself and admins may read one. */
function assertMayRead(identity: Identity, customerId: string): void {
  if (identity.customerId !== customerId && !isAdmin(identity)) throw forbidden('You can only read your own account');
}

/**
 * The AuthPayload of a session: a web session's token goes only into the grant header (the
 * gateway's cookie), a mobile one's tokens into the body.
 */
function authPayload(ctx: AccountsContext, issued: IssuedSession) {
  const expiresAt = issued.accessTokenExpiresAt.toISOString();
  if (issued.session.kind === 'web') {
    ctx.sessionGrant = issued.accessToken;
    return { accessToken: null, refreshToken: null, token: null, expiresAt, customer: issued.customer };
  }
  return { accessToken: issued.accessToken, refreshToken: issued.refreshToken, token: issued.accessToken, expiresAt, customer: issued.customer };
}

export const resolvers: GraphQLResolverMap<AccountsContext> = {
  Role: { CUSTOMER: 'customer', ADMIN: 'admin' } as never,
  Query: {
    me: (_root, _args, ctx) => (ctx.identity.customerId ? ctx.customerLoader.load(ctx.identity.customerId) : null),
  },
  Mutation: {
    signUp: (_root, args: { email: string; password: string; name: string }, ctx) => signUp(ctx, ctx.caller, args),
    signIn: async (_root, args: { email: string; password: string }, ctx) => authPayload(ctx, await signIn(ctx, ctx.caller, args)),
    refreshSession: async (_root, args: { refreshToken: string }, ctx) => authPayload(ctx, await refreshSession(ctx, args)),
    signOut: async (_root, args: { everywhere?: boolean | null }, ctx) => {
      const ended = await signOut(ctx, ctx.caller, { everywhere: args.everywhere ?? false });
      // A web client's cookie is cleared whatever there was to end: it must never outlive a sign-out.
      if (ctx.caller.requestedKind === 'web') ctx.sessionGrant = sessionEnded;
      return ended;
    },
    changePassword: async (_root, args: { currentPassword: string; newPassword: string }, ctx) => authPayload(ctx, await changePassword(ctx, ctx.caller, args)),
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
    nodeId: (customer: CustomerRecord) => toGlobalId('Customer', customer.id),
    addresses: (customer: CustomerRecord, _args, ctx) => ctx.addressLoader.load(customer.id),
    createdAt: (customer: CustomerRecord) => customer.createdAt.toISOString(),
  },
};
