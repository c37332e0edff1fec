/**
 * Sign-out ends the caller's session, or every session of the customer (`everywhere`). The
 * revocation reaches the gateway through the feed within one poll. Signing out twice, or
 * anonymously, ends nothing and answers false: a client may always sign out.
 */
import type { Caller, AccountsDependencies } from './dependencies.ts';

export async function signOut(deps: Pick<AccountsDependencies, 'sessions'>, caller: Pick<Caller, 'identity'>, input: { everywhere: boolean }): Promise<boolean> {
  const { customerId, sessionId } = caller.identity;
  if (!customerId) return false;
  if (input.everywhere) return (await deps.sessions.revokeAllOf(customerId, 'signed_out_everywhere')) > 0;
  // A token without a session (issued before sessions existed) cannot be ended, only outlived.
  if (!sessionId) return false;
  return deps.sessions.revokeSession(customerId, sessionId, 'signed_out');
}
