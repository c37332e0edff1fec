/**
 * What "the same request" means for an idempotency key: the fingerprint of a placing request,
 * SHA-256 over a canonical JSON of its normalised input. Two requests with one key are the same
 * when they ask for the same products in the same quantities (in any line order: an order holds
 * each product once), to the same address (as checkShippingAddress normalises it), paid with the
 * same token. Prices are not part of it: the client does not send them, so a retry after a
 * price change is still the same request and gets its first order.
 */
import { createHash } from 'node:crypto';
import type { ShippingAddress } from '../../../platform/events/contracts/order-saga.ts';
import type { RequestedLine } from './order.ts';

export interface PlacingRequest {
  /** Checked by checkLines (product ids lower-cased). */
  lines: readonly RequestedLine[];
  /** Checked by checkShippingAddress (trimmed, country upper-cased, empty line2 as null). */
  shippingAddress: ShippingAddress;
  /** Trimmed. */
  paymentToken: string;
}

/** Changing what goes in changes every fingerprint: bump it so old and new can be told apart. */
const fingerprintVersion = 1;

/** 64 hex characters; equal for requests that are the same, in the sense above. */
export function requestFingerprint(request: PlacingRequest): string {
  const { name, line1, line2, city, postalCode, country } = request.shippingAddress;
  // Arrays, not objects: the order of every value is fixed here, not by how the input was built.
  const canonical = JSON.stringify([
    fingerprintVersion,
    [...request.lines].sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0)).map(({ productId, quantity }) => [productId, quantity]),
    [name, line1, line2 ?? null, city, postalCode, country],
    request.paymentToken,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}
