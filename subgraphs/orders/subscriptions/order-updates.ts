/**
 * The async iterators behind the orders subscriptions, fed by the OrderProjectionFeed (so by
 * PostgreSQL LISTEN, never by process memory). A notification only says that something changed;
 * the iterator then reads what it has not sent yet and sends every state after the last one it
 * sent, in order: each status an order goes through reaches the client once, even when two
 * follow each other within a millisecond (shipped, then delivered) and arrive as one
 * notification. Leaving (the client completes, or the socket closes) removes the listener; the
 * feed closes its connection when the last one leaves.
 *
 * Both are resumable (docs/decisions/0020): each event carries its position (the change's feed
 * position for `myOrderUpdates`, the order's version for `orderStatusChanged`), and a
 * subscription started with `resume.after` first sends what came after it, then goes on live.
 * Listening starts before that replay and every read is "after the last position read", so
 * nothing falls between replay and live, and nothing is sent twice.
 */
import { requireSignedIn, type Identity } from '../../../platform/identity/identity.ts';
import { isConnectionLost } from '../../../platform/database/connection-loss.ts';
import { DomainError } from '../../../platform/errors/domain-error.ts';
import { viewOfSummary, type OrderHistory, type OrderReadModel, type OrderView } from '../infrastructure/order-read-model.ts';
import { checkOrderId, readableOrder } from '../use-cases/read-orders.ts';
import type { OrderProjectionFeed } from './projection-feed.ts';
import { PushIterator } from '../../../platform/async/push-iterator.ts';
import { checkpoint, positioned, type Checkpoint, type Positioned } from '../../../platform/graphql/subscription-position.ts';

export interface OrderUpdatesDeps {
  feed: OrderProjectionFeed;
  readModel: Pick<OrderReadModel, 'statusHistories' | 'feedHead' | 'customerChangesAfter'>;
  identity: Identity;
  /** Set when the gateway made the subscription resumable; `after` is where to resume. */
  resume?: { after: string | undefined };
}

/** What a subscription yields: the field name keyed to the order, as graphql-js expects, at its position; or a checkpoint. */
type Events<K extends string> = AsyncIterableIterator<Positioned<Record<K, OrderView>> | Checkpoint>;

/** Changes read per statement when a subscription catches up. */
const changesPerRead = 200;

type State = OrderHistory['states'][number];

/** The order as it was in `states[index]`, its timeline up to then included. */
function viewAt(states: readonly State[], index: number): OrderView {
  const { committedBefore: _committedBefore, ...summary } = states[index]!;
  const timelineAsOf = states.slice(0, index + 1).map((state) => ({ position: state.version, status: state.status, at: state.updatedAt }));
  return { ...viewOfSummary(summary, 'stream'), timelineAsOf };
}

/**
 * Runs the listener's work one notification after another, and only once `ready` settled (the
 * subscription's own first read), so nothing is sent out of order or before the first state.
 * A read that lost its database connection (a restart, a failover) does not end the subscription:
 * it is read again a moment later, until the database is back or the subscription ends
 * (docs/decisions/0015). Every read starts after what was sent, so nothing is sent twice.
 */
function serially(ready: Promise<unknown>, fail: (error: unknown) => void, ended: () => boolean): (work: () => Promise<void>) => void {
  let chain: Promise<unknown> = ready.catch(() => {});
  const run = (work: () => Promise<void>) => {
    chain = chain.then(work).catch((error: unknown) => {
      if (!isConnectionLost(error)) return fail(error);
      setTimeout(() => ended() || run(work), readRetryMs).unref();
    });
  };
  return run;
}

/** Wait before reading again after a read lost its database connection. */
const readRetryMs = 1_000;

/**
 * One order's status changes, for its customer or an admin: the order as it is when subscribing
 * first, then each later state (resumed: each state after `resume.after`, then a checkpoint).
 * NOT_FOUND when there is no such order, FORBIDDEN when it is someone else's (both before
 * anything is sent).
 */
export async function orderStatusChanges(deps: OrderUpdatesDeps, id: string): Promise<Events<'orderStatusChanged'>> {
  const orderId = checkOrderId(id, 'orderId');
  const iterator = new PushIterator<Positioned<Record<'orderStatusChanged', OrderView>> | Checkpoint>();
  let sentVersion = 0;
  const sendAfterSent = (states: readonly State[]) => {
    states.forEach((state, index) => {
      if (state.version <= sentVersion || iterator.done) return;
      sentVersion = state.version;
      iterator.push(positioned({ orderStatusChanged: viewAt(states, index) }, state.version));
    });
  };
  const history = async () => (await deps.readModel.statusHistories([orderId])).get(orderId)?.states ?? [];

  let first!: () => void;
  const ready = new Promise<void>((resolve) => (first = resolve));
  const enqueue = serially(ready, (error) => iterator.fail(error), () => iterator.done);
  // Listen first, then read: a change committed in between is then heard, not lost.
  const unsubscribe = await deps.feed.subscribe((orderIds) => {
    if (orderIds === null || orderIds.includes(orderId)) enqueue(async () => sendAfterSent(await history()));
  });
  iterator.setCleanup(unsubscribe);
  try {
    const states = await history();
    if (!readableOrder(deps.identity, states.length > 0 ? viewAt(states, states.length - 1) : null)) throw new DomainError('NOT_FOUND', 'There is no such order');
    const after = deps.resume?.after;
    if (after !== undefined) {
      // Resumed: every state after the last one the subscriber got, then where it is now.
      sentVersion = Math.min(Number(after), states.at(-1)!.version);
      sendAfterSent(states);
      iterator.push(checkpoint(sentVersion));
    } else {
      // As it is now first (not its past), then every later state.
      sentVersion = states.at(-1)!.version - 1;
      sendAfterSent(states);
    }
  } catch (error) {
    await iterator.return();
    throw error;
  } finally {
    first();
  }
  return iterator;
}

/**
 * The caller's own orders (an admin's own too: not everyone's): every state an order of theirs
 * reaches, in the order the projection recorded them. A new subscription sends the changes that
 * commit after it started (those whose transactions had not committed at its database snapshot),
 * after a checkpoint at the feed position it started from; a resumed one first every change of
 * the caller after `resume.after`, then a checkpoint, then live.
 */
export async function myOrderUpdates(deps: OrderUpdatesDeps): Promise<Events<'myOrderUpdates'>> {
  const customerId = requireSignedIn(deps.identity);
  const iterator = new PushIterator<Positioned<Record<'myOrderUpdates', OrderView>> | Checkpoint>();
  /** The last feed position read: every change of the caller up to it was sent (or predates the start). */
  let cursor = 0n;
  /** A new subscription's start: changes committed before it are not sent, even when projected later. */
  let snapshot: string | undefined;
  const readAfterCursor = async () => {
    for (;;) {
      const { horizon, changes } = await deps.readModel.customerChangesAfter(customerId, String(cursor), changesPerRead, snapshot);
      for (const { position, states } of changes) {
        if (iterator.done) return;
        cursor = BigInt(position);
        if (states.at(-1)!.committedBefore) continue;
        iterator.push(positioned({ myOrderUpdates: viewAt(states, states.length - 1) }, position));
      }
      if (changes.length === changesPerRead) continue;
      // Nothing of the caller's up to the horizon is left: later reads start there.
      if (BigInt(horizon) > cursor) cursor = BigInt(horizon);
      return;
    }
  };

  let first!: () => void;
  const ready = new Promise<void>((resolve) => (first = resolve));
  const enqueue = serially(ready, (error) => iterator.fail(error), () => iterator.done);
  // Notifications that arrive while a read waits its turn are covered by that read.
  let readQueued = false;
  const unsubscribe = await deps.feed.subscribe(() => {
    if (readQueued) return;
    readQueued = true;
    enqueue(async () => {
      readQueued = false;
      await readAfterCursor();
    });
  });
  iterator.setCleanup(unsubscribe);
  try {
    // Listening is on: whatever commits from here is both notified and numbered after the head.
    const after = deps.resume?.after;
    if (after === undefined) {
      const head = await deps.readModel.feedHead();
      cursor = BigInt(head.horizon);
      snapshot = head.snapshot;
    } else {
      cursor = BigInt(after);
      await readAfterCursor();
    }
    iterator.push(checkpoint(cursor));
  } catch (error) {
    await iterator.return();
    throw error;
  } finally {
    first();
  }
  return iterator;
}
