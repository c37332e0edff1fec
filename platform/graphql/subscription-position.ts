/**
 * Resumable subscriptions: what the gateway and a subgraph say to each other so that a
 * subscription picks up exactly where it was after its socket dropped or its identity was renewed
 * (docs/decisions/0020).
 *
 * - Each event of a resumable field has a **position**: a non-negative integer, as a decimal
 *   string, that grows along the subscription (for `myOrderUpdates` the change's place in
 *   projection order, for `orderStatusChanged` the order's version). The subgraph sends it in the
 *   result's `extensions[positionExtension]`. A result with a position and no `data` is a
 *   **checkpoint**: nothing happened for this subscriber, but it is now at that position (a new
 *   subscription's first message, so that it can resume before its first event).
 * - The gateway sends `extensions[resumeAfterExtension]` with each `subscribe`: `null` for a new
 *   subscription (report positions, please), or the position of the last event its subscriber got.
 *   The subgraph then sends first every event after it (only the caller's, as authorized by the
 *   identity the same message carries), then goes on live. Without the extension nothing changes:
 *   no positions, no checkpoints, as for any other graphql-ws client.
 *
 * Positions grant nothing: they select within what the caller's verified identity may read anyway.
 */

/** The `subscribe` message's extension the gateway resumes with. */
export const resumeAfterExtension = 'x-commerce-resume-after';
/** The result's extension that carries an event's position. */
export const positionExtension = 'x-commerce-position';

/** Where a source event's position travels from a resolver to the subgraph's socket. */
const positionKey = Symbol('subscription position');

/** A source event (what a subscription resolver yields) with its position. */
export type Positioned<T extends object> = T & { readonly [positionKey]: string };

/** `payload` at `position`: the socket sends the position with the event's result. */
export function positioned<T extends object>(payload: T, position: bigint | number | string): Positioned<T> {
  return { ...payload, [positionKey]: String(position) } as Positioned<T>;
}

/** A checkpoint: no event for the subscriber, only the position it is at now. */
export interface Checkpoint {
  readonly [positionKey]: string;
  readonly checkpoint: true;
}

export function checkpoint(position: bigint | number | string): Checkpoint {
  return { [positionKey]: String(position), checkpoint: true };
}

export function isCheckpoint(event: unknown): event is Checkpoint {
  return typeof event === 'object' && event !== null && (event as Partial<Checkpoint>).checkpoint === true && positionKey in event;
}

/** The position a source event carries, if any. */
export function positionOf(event: unknown): string | undefined {
  return typeof event === 'object' && event !== null && positionKey in event ? (event as Positioned<object>)[positionKey] : undefined;
}

/** Up to 19 digits: every position fits PostgreSQL's bigint. */
const positionPattern = /^(0|[1-9]\d{0,18})$/;

/** A well-formed position, or undefined. */
export function parsePosition(value: unknown): bigint | undefined {
  return typeof value === 'string' && positionPattern.test(value) ? BigInt(value) : undefined;
}

/**
 * What a `subscribe` message asks for: `undefined` when it is not resumable (no extension),
 * `{ after: undefined }` for a new resumable subscription, `{ after }` to resume, or `'invalid'`.
 */
export function resumeRequestOf(extensions: Record<string, unknown> | null | undefined): { after: string | undefined } | 'invalid' | undefined {
  if (!extensions || !(resumeAfterExtension in extensions)) return undefined;
  const value = extensions[resumeAfterExtension];
  if (value === null) return { after: undefined };
  return parsePosition(value) === undefined ? 'invalid' : { after: value as string };
}
