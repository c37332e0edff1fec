/**
 * The async iterators behind the orders subscriptions, fed by the OrderProjectionFeed (so by
 * PostgreSQL LISTEN, never by process memory). A notification only says which orders changed;
 * the iterator then reads those orders' streams and sends every state after the last one it
 * sent, in order: each status an order goes through reaches the client once, even when two
 * follow each other within a millisecond (shipped, then delivered) and arrive as one
 * notification. Leaving (the client completes, or the socket closes) removes the listener; the
 * feed closes its connection when the last one leaves.
 */
import { requireSignedIn, type Identity } from '../../../platform/identity/identity.ts';
import { DomainError } from '../../../platform/errors/domain-error.ts';
import { viewOfSummary, type OrderHistory, type OrderReadModel, type OrderView } from '../infrastructure/order-read-model.ts';
import { checkOrderId, readableOrder } from '../use-cases/read-orders.ts';
import type { OrderProjectionFeed } from './projection-feed.ts';
import { PushIterator } from '../../../platform/async/push-iterator.ts';

export interface OrderUpdatesDeps {
  feed: OrderProjectionFeed;
  readModel: Pick<OrderReadModel, 'statusHistories' | 'currentSnapshot'>;
  identity: Identity;
}

/** What a subscription yields: the field name keyed to the order, as graphql-js expects. */
type Payload<K extends string> = Record<K, OrderView>;

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
 */
function serially(ready: Promise<unknown>, fail: (error: unknown) => void): (work: () => Promise<void>) => void {
  let chain: Promise<unknown> = ready.catch(() => {});
  return (work) => {
    chain = chain.then(work).catch(fail);
  };
}

/**
 * One order's status changes, for its customer or an admin: the order as it is when subscribing
 * first, then each later state. NOT_FOUND when there is no such order, FORBIDDEN when it is
 * someone else's (both before anything is sent).
 */
export async function orderStatusChanges(deps: OrderUpdatesDeps, id: string): Promise<AsyncIterableIterator<Payload<'orderStatusChanged'>>> {
  const orderId = checkOrderId(id, 'orderId');
  const iterator = new PushIterator<Payload<'orderStatusChanged'>>();
  let sentVersion = 0;
  const sendAfterSent = (states: readonly State[]) => {
    states.forEach((state, index) => {
      if (state.version <= sentVersion || iterator.done) return;
      sentVersion = state.version;
      iterator.push({ orderStatusChanged: viewAt(states, index) });
    });
  };
  const history = async () => (await deps.readModel.statusHistories([orderId])).get(orderId)?.states ?? [];

  let first!: () => void;
  const ready = new Promise<void>((resolve) => (first = resolve));
  const enqueue = serially(ready, (error) => iterator.fail(error));
  // Listen first, then read: a change committed in between is then heard, not lost.
  const unsubscribe = await deps.feed.subscribe((orderIds) => {
    if (orderIds.includes(orderId)) enqueue(async () => sendAfterSent(await history()));
  });
  iterator.setCleanup(unsubscribe);
  try {
    const states = await history();
    if (!readableOrder(deps.identity, states.length > 0 ? viewAt(states, states.length - 1) : null)) throw new DomainError('NOT_FOUND', 'There is no such order');
    // As it is now first (not its past), then every later state.
    sentVersion = states.at(-1)!.version - 1;
    sendAfterSent(states);
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
 * reaches after the subscription started, in order. "After" is exact: the events whose
 * transactions had not committed at the subscription's database snapshot.
 */
export async function myOrderUpdates(deps: OrderUpdatesDeps): Promise<AsyncIterableIterator<Payload<'myOrderUpdates'>>> {
  const customerId = requireSignedIn(deps.identity);
  const iterator = new PushIterator<Payload<'myOrderUpdates'>>();
  /** Per order, the last version sent (or, before any, the last one committed before the start). */
  const sentVersions = new Map<string, number>();
  let snapshot = '';

  let first!: () => void;
  const ready = new Promise<void>((resolve) => (first = resolve));
  const enqueue = serially(ready, (error) => iterator.fail(error));
  const unsubscribe = await deps.feed.subscribe((orderIds) =>
    enqueue(async () => {
      const histories = await deps.readModel.statusHistories(orderIds, snapshot);
      for (const [orderId, { states }] of histories) {
        if (states[0]?.customerId !== customerId) continue;
        let sent = sentVersions.get(orderId) ?? Math.max(0, ...states.filter((s) => s.committedBefore).map((s) => s.version));
        states.forEach((state, index) => {
          if (state.version <= sent || iterator.done) return;
          sent = state.version;
          iterator.push({ myOrderUpdates: viewAt(states, index) });
        });
        sentVersions.set(orderId, sent);
      }
    }),
  );
  iterator.setCleanup(unsubscribe);
  try {
    // Taken once LISTEN is on: whatever commits after it is both notified and not in it.
    snapshot = await deps.readModel.currentSnapshot();
  } catch (error) {
    await iterator.return();
    throw error;
  } finally {
    first();
  }
  return iterator;
}
