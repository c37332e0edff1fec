/**
 * Relay-style cursor pagination helpers: page sizes are validated (never silently clamped, so a
 * client learns its request was out of range) and cursors are opaque but checked.
 */
import { invalidInput } from '../errors/domain-error.ts';

export interface PageSizeLimits {
  /** @default 20 */
  defaultSize?: number;
  /** @default 100 */
  maxSize?: number;
}

export function pageSize(first: number | null | undefined, limits: PageSizeLimits = {}, field = 'first'): number {
  const { defaultSize = 20, maxSize = 100 } = limits;
  if (first === null || first === undefined) return defaultSize;
  if (!Number.isInteger(first) || first < 0 || first > maxSize) {
    throw invalidInput(`${field} must be between 0 and ${maxSize}`, field);
  }
  return first;
}

const cursorPrefix = 'cursor:v1:';

/**
 * The longest key any caller puts in a cursor, in UTF-8 bytes. It is the catalog's
 * JSON.stringify([name, id]): a name holds at most 200 characters (checkNewProduct; VARCHAR(200)
 * in its table), and JSON.stringify writes one character as at most 6 bytes (a control character
 * becomes `\u0001`; anything else takes 4 bytes or fewer), so `["` + 200 × 6 + `","` + a uuid +
 * `"]`. Orders' keys, [ISO time, uuid], are under 80 bytes. A caller with a longer key must
 * raise this.
 */
const longestKeyBytes = 2 + 200 * 6 + 3 + 36 + 2;

/**
 * The longest cursor accepted, in base64url characters (4 per 3 bytes, unpadded): 1671. Every
 * cursor we hand out fits, and anything longer is refused before it is decoded, so a client
 * cannot make us decode and parse megabytes.
 */
export const maxCursorLength = Math.ceil(((cursorPrefix.length + longestKeyBytes) * 4) / 3);
const cursorPattern = new RegExp(`^[A-Za-z0-9_-]{1,${maxCursorLength}}$`);

export function encodeCursor(key: string): string {
  return Buffer.from(`${cursorPrefix}${key}`, 'utf8').toString('base64url');
}

/** The key inside a cursor, or BAD_USER_INPUT when it is not one of ours. */
export function decodeCursor(cursor: string | null | undefined, isValidKey: (key: string) => boolean, field = 'after'): string | undefined {
  if (cursor === null || cursor === undefined) return undefined;
  const decoded = cursorPattern.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const key = decoded.startsWith(cursorPrefix) ? decoded.slice(cursorPrefix.length) : '';
  if (!isValidKey(key)) throw invalidInput(`${field} is not a valid cursor: use a cursor returned by a previous page`, field);
  return key;
}

/** Relay's PageInfo of a forward page. */
export interface PageInfo {
  hasNextPage: boolean;
  /**
   * Paging forward, Relay lets this be false; we say true after a cursor, since the edge it
   * names comes before this page (it may have left the filter since, which only a backward
   * query could tell).
   */
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

export function forwardPageInfo(edges: readonly { cursor: string }[], hasNextPage: boolean, after: unknown): PageInfo {
  return { hasNextPage, hasPreviousPage: after !== undefined && after !== null, startCursor: edges[0]?.cursor ?? null, endCursor: edges.at(-1)?.cursor ?? null };
}
