/**
 * Reading orders: a customer reads only their own, admins read all. Ids and page arguments are
 * checked before any query runs.
 */
import type DataLoader from 'dataloader';
import { DomainError, invalidInput } from '../../../platform/errors/domain-error.ts';
import { decodeCursor, encodeCursor, forwardPageInfo, pageSize, type PageInfo } from '../../../platform/graphql/pagination.ts';
import { isAdmin, requireSignedIn, type Identity } from '../../../platform/identity/identity.ts';
import { isUuid } from '../../../platform/ids.ts';
import type { CustomerOrdersKey, OrderPage, OrderPosition, OrderReadModel, OrderView } from '../infrastructure/order-read-model.ts';

export interface OrderConnection {
  edges: { cursor: string; node: OrderView }[];
  pageInfo: PageInfo;
}

export function checkOrderId(id: string, field = 'id'): string {
  if (!isUuid(id)) throw invalidInput(`${field} is not a valid order id`, field);
  return id.toLowerCase();
}

/** The order when the caller may read it; FORBIDDEN when it is someone else's. */
export function readableOrder(identity: Identity, order: OrderView | null): OrderView | null {
  const customerId = requireSignedIn(identity);
  if (!order) return null;
  if (order.customerId !== customerId && !isAdmin(identity)) throw new DomainError('FORBIDDEN', 'This order belongs to another customer');
  return order;
}

export async function findOrder(orders: DataLoader<string, OrderView | null>, identity: Identity, id: string): Promise<OrderView | null> {
  requireSignedIn(identity);
  return readableOrder(identity, await orders.load(checkOrderId(id)));
}

/** A cursor holds the (placedAt, orderId) position of the last order of a page. */
function decodePosition(cursor: string | null | undefined): OrderPosition | undefined {
  const key = decodeCursor(cursor, (text) => parsePosition(text) !== undefined);
  return key === undefined ? undefined : parsePosition(key);
}

function parsePosition(text: string): OrderPosition | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && !Number.isNaN(Date.parse(value[0])) && isUuid(value[1])) {
      return { placedAt: value[0], orderId: value[1] };
    }
  } catch {
    // not JSON: not one of our cursors
  }
  return undefined;
}

/** A customer's orders, newest first, for that customer or an admin (FORBIDDEN otherwise). */
export async function listCustomerOrders(
  pages: Pick<DataLoader<CustomerOrdersKey, OrderPage, string>, 'load'>,
  identity: Identity,
  customerId: string,
  args: { first?: number | null; after?: string | null },
): Promise<OrderConnection> {
  const callerId = requireSignedIn(identity);
  if (customerId !== callerId && !isAdmin(identity)) throw new DomainError('FORBIDDEN', "Only the customer themself and admins can read a customer's orders");
  const first = pageSize(args.first);
  const after = decodePosition(args.after);
  const page = isUuid(customerId) ? await pages.load({ customerId: customerId.toLowerCase(), first, ...(after ? { after } : {}) }) : { orders: [], hasNextPage: false };
  const edges = page.orders.map((node) => ({ cursor: encodeCursor(JSON.stringify([node.placedAt, node.orderId])), node }));
  return { edges, pageInfo: forwardPageInfo(edges, page.hasNextPage, after) };
}
