/**
 * The web (cookie) session of decision 0022: signIn with `x-commerce-session: cookie` makes the
 * gateway set an HttpOnly cookie instead of returning a token; signOut clears it. Whether someone
 * is signed in is asked of the gateway (`me`): the page cannot read the cookie.
 */
import { gql, type ApolloClient } from '@apollo/client';
import { problemOf } from './gateway.ts';

export interface Customer {
  id: string;
  name: string;
  email: string;
}

/** Asks the gateway for a cookie session rather than a token in the answer. */
const cookieSession = { headers: { 'x-commerce-session': 'cookie' } };

const signInMutation = gql`
  mutation SignIn($email: String!, $password: String!) {
    signIn(email: $email, password: $password) {
      expiresAt
      customer { id name email }
    }
  }
`;

const signOutMutation = gql`
  mutation SignOut {
    signOut
  }
`;

const meQuery = gql`
  query Me {
    me { id name email }
  }
`;

export async function signIn(client: ApolloClient, email: string, password: string): Promise<Customer> {
  const result = await client.mutate<{ signIn: { customer: Customer } }>({ mutation: signInMutation, variables: { email, password }, context: cookieSession });
  await client.clearStore(); // what was read signed out is not the customer's view
  return result.data!.signIn.customer;
}

export async function signOut(client: ApolloClient): Promise<void> {
  await client.mutate({ mutation: signOutMutation, context: cookieSession });
  await client.clearStore();
}

/** The signed-in customer, or null (no cookie, or a session that ended). */
export async function currentCustomer(client: ApolloClient): Promise<Customer | null> {
  try {
    const result = await client.query<{ me: Customer | null }>({ query: meQuery, fetchPolicy: 'network-only' });
    return result.data?.me ?? null;
  } catch (error) {
    if (['UNAUTHENTICATED', 'UNAUTHORIZED_FIELD_OR_TYPE'].includes(problemOf(error).code)) return null;
    throw error;
  }
}
