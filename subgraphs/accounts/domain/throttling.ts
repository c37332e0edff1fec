/**
 * How hard guessing passwords and mass-creating accounts are made. Pure: the counting itself is
 * done by a shared store (infrastructure/attempt-guard.ts), so several accounts replicas agree.
 *
 * - An account: after `freeFailures` consecutive failed sign-ins, from any address, it is locked
 *   for `firstLockSeconds`, doubling with each further failure, at most `maxLockSeconds`. A success
 *   resets the count. Locking the account (not only account + address) is what stops a botnet
 *   that tries one password per address; its price is that a stranger can lock someone out for
 *   a while, which the short first lock and the cap keep tolerable.
 * - An address: at most `failuresPerAddress` failed sign-ins per `addressWindowSeconds`, whatever
 *   the accounts (password spraying), and at most `signUpsPerAddress` sign-ups per
 *   `signUpWindowSeconds`.
 */

export interface ThrottlePolicy {
  /** Consecutive failures of one account before it is locked. @default 5 */
  freeFailures: number;
  /** The first lock. @default 60 */
  firstLockSeconds: number;
  /** The longest lock. @default 3600 */
  maxLockSeconds: number;
  /** How long an account's consecutive failures are remembered. @default 86_400 */
  failureMemorySeconds: number;
  /** Failed sign-ins one address may make per window. @default 100 */
  failuresPerAddress: number;
  /** @default 86_400 */
  addressWindowSeconds: number;
  /** Sign-ups one address may make per window. @default 10 */
  signUpsPerAddress: number;
  /** @default 3600 */
  signUpWindowSeconds: number;
}

export const defaultThrottlePolicy: ThrottlePolicy = {
  freeFailures: 5,
  firstLockSeconds: 60,
  maxLockSeconds: 3600,
  failureMemorySeconds: 86_400,
  failuresPerAddress: 100,
  addressWindowSeconds: 86_400,
  signUpsPerAddress: 10,
  signUpWindowSeconds: 3600,
};

export function checkThrottlePolicy(policy: ThrottlePolicy): ThrottlePolicy {
  for (const [name, value] of Object.entries(policy)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${value}`);
  }
  if (policy.maxLockSeconds < policy.firstLockSeconds) throw new Error('maxLockSeconds must be at least firstLockSeconds');
  return policy;
}

/** How long an account is locked after its `consecutiveFailures`-th failure in a row; 0: not locked. */
export function lockSecondsAfter(consecutiveFailures: number, policy: ThrottlePolicy): number {
  if (consecutiveFailures < policy.freeFailures) return 0;
  const doublings = Math.min(consecutiveFailures - policy.freeFailures, 30);
  return Math.min(policy.firstLockSeconds * 2 ** doublings, policy.maxLockSeconds);
}
