/**
 * Placing an order for the signed-in customer. Everything is checked before anything is
 * written; prices come from the orders context's own copy of the catalog's prices. A retry with
 * the same idempotency key returns the order placed first, even when the retries race: the
 * `order_idempotency` row is written in the order's transaction and its primary key lets one win.
 * The row keeps the request's fingerprint (domain/placing-request.ts): the key used again with
 * another request is refused, CONFLICT with reason IDEMPOTENCY_KEY_REUSED, and writes nothing;
 * so is the loser of two first uses of one key with different requests.
 */
import { GraphQLError } from 'graphql';
import { invalidInput } from '../../../platform/errors/domain-error.ts';
import { ErrorCode } from '../../../platform/errors/index.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import type { ShippingAddress } from '../../../platform/events/contracts/order-saga.ts';
import { isUuid, newId } from '../../../platform/ids.ts';
import { checkLines, checkShippingAddress, type Order, type PricedLine, type RequestedLine } from '../domain/order.ts';
import { requestFingerprint } from '../domain/placing-request.ts';
import type { OrdersDatabase, OrdersTransaction } from '../infrastructure/database.ts';
import type { OrderChange, OrderStore } from '../infrastructure/order-store.ts';
import type { PriceList } from '../infrastructure/price-list.ts';

export interface PlaceOrderInput {
  lines: RequestedLine[];
  shippingAddress: ShippingAddress;
  /** The client's payment token (e.g. `tok_visa`): handed to the saga, never stored in the order's events. */
  paymentToken: string;
  /** Chosen by the client per order; a retry sends the same one. */
  idempotencyKey: string;
}

/** What `onPlaced` is given: the new order, its OrderPlaced event, and the payment token. */
export interface PlacedOrder extends OrderChange {
  order: Order;
  paymentToken: string;
}

/**
 * Runs in the placing transaction, after OrderPlaced and the idempotency row were written
 * (the saga starts here). Throwing rolls the whole placement back.
 */
export type PlaceOrderHook = (tx: OrdersTransaction, placed: PlacedOrder, causation: Causation) => Promise<void>;

export interface PlaceOrderDependencies {
  db: OrdersDatabase;
  store: OrderStore;
  prices: PriceList;
  clock: () => Date;
  onPlaced?: PlaceOrderHook;
}

const maxKeyLength = 100;
const maxTokenLength = 200;

/** Thrown inside the placing transaction when another placement holds the key: rolls it back. */
class KeyTaken extends Error {}

/** What a client can branch on when it sent one idempotency key with two different requests. */
const idempotencyKeyReused = 'IDEMPOTENCY_KEY_REUSED';

export async function placeOrder(deps: PlaceOrderDependencies, customerId: string, input: PlaceOrderInput, causation: Causation): Promise<Order> {
  const request = checkInput(input);
  const fingerprint = requestFingerprint(request);
  const placedBefore = await orderOfKey(deps, customerId, request.idempotencyKey, fingerprint);
  if (placedBefore) return placedBefore;

  const { lines, currency } = await priceLines(deps.prices, request.lines);
  const orderId = newId();
  const command = {
    type: 'PlaceOrder' as const,
    orderId,
    customerId,
    lines,
    currency,
    shippingAddress: request.shippingAddress,
    idempotencyKey: request.idempotencyKey,
    at: deps.clock().toISOString(),
  };
  try {
    const change = await deps.store.execute(orderId, command, causation, async (tx, change) => {
      // Waits on a concurrent placement's uncommitted row, then does nothing if that one commits.
      const claimed = await tx.$executeRaw`
        INSERT INTO order_idempotency (customer_id, idempotency_key, order_id, request_fingerprint)
        VALUES (${customerId}::uuid, ${request.idempotencyKey}, ${orderId}::uuid, ${fingerprint})
        ON CONFLICT DO NOTHING`;
      if (claimed === 0) throw new KeyTaken();
      await deps.onPlaced?.(tx, { ...change, order: change.order!, paymentToken: request.paymentToken }, causation);
    });
    return change.order!;
  } catch (error) {
    if (!(error instanceof KeyTaken)) throw error;
    const winner = await orderOfKey(deps, customerId, request.idempotencyKey, fingerprint);
    if (!winner) throw error;
    return winner;
  }
}

/**
 * The order the customer placed with this key, null if none; refuses a request other than the
 * one that claimed the key. A key claimed before fingerprints were recorded (null) answers with
 * its order whatever the request, as it always did.
 */
async function orderOfKey(deps: PlaceOrderDependencies, customerId: string, idempotencyKey: string, fingerprint: string): Promise<Order | null> {
  const row = await deps.db.orderIdempotency.findUnique({
    where: { customerId_key: { customerId, key: idempotencyKey } },
    select: { orderId: true, fingerprint: true },
  });
  if (!row) return null;
  if (row.fingerprint !== null && row.fingerprint !== fingerprint) throw keyReused();
  return (await deps.store.load(row.orderId)).order;
}

/**
 * A GraphQLError rather than a DomainError: a DomainError reaches clients with its code and
 * field only, and the client needs the reason to tell this CONFLICT from others.
 */
function keyReused(): GraphQLError {
  return new GraphQLError(
    'This idempotency key was already used for a different order (other lines, quantities, shipping address or payment token): use a new key for a new order, or send the first request unchanged to get its order',
    { extensions: { code: ErrorCode.CONFLICT, reason: idempotencyKeyReused, field: 'input.idempotencyKey' } },
  );
}

/** Shape and size of everything the client sent, before any lookup. */
function checkInput(input: PlaceOrderInput): PlaceOrderInput {
  input.lines.forEach((line, index) => {
    if (!isUuid(line.productId)) throw invalidInput('productId is not a valid id', `input.lines[${index}].productId`);
  });
  const lines = checkLines(input.lines.map(({ productId, quantity }) => ({ productId: productId.toLowerCase(), quantity })));
  const shippingAddress = checkShippingAddress(input.shippingAddress);
  const paymentToken = input.paymentToken.trim();
  if (paymentToken.length === 0 || paymentToken.length > maxTokenLength) {
    throw invalidInput(`paymentToken must be 1–${maxTokenLength} characters`, 'input.paymentToken');
  }
  const idempotencyKey = input.idempotencyKey;
  if (idempotencyKey.trim().length === 0 || idempotencyKey.length > maxKeyLength) {
    throw invalidInput(`idempotencyKey must be 1–${maxKeyLength} characters, not blank`, 'input.idempotencyKey');
  }
  return { lines, shippingAddress, paymentToken, idempotencyKey };
}

/** Prices every line from the local copy: unknown or discontinued products are refused, by name. */
async function priceLines(prices: PriceList, lines: RequestedLine[]): Promise<{ lines: PricedLine[]; currency: string }> {
  const known = await prices.find(lines.map((line) => line.productId));
  const priced = lines.map((line, index): PricedLine & { currency: string } => {
    const product = known.get(line.productId);
    const field = `input.lines[${index}].productId`;
    if (!product || product.price === null || product.currency === null) throw invalidInput(`Unknown product ${line.productId}: it is not in the catalog`, field);
    if (product.discontinued) throw invalidInput(`Product ${product.name ?? line.productId} (${line.productId}) is discontinued`, field);
    return { productId: line.productId, quantity: line.quantity, unitPrice: product.price, currency: product.currency };
  });
  const currency = priced[0]!.currency;
  const other = priced.findIndex((line) => line.currency !== currency);
  if (other >= 0) {
    throw invalidInput(`All products of an order must be priced in one currency: ${priced[other]!.productId} is in ${priced[other]!.currency}, not ${currency}`, `input.lines[${other}].productId`);
  }
  return { lines: priced.map(({ productId, quantity, unitPrice }) => ({ productId, quantity, unitPrice })), currency };
}
