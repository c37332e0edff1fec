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

export function encodeCursor(key: string): string {
  return Buffer.from(`${cursorPrefix}${key}`, 'utf8').toString('base64url');
}

/** The key inside a cursor, or BAD_USER_INPUT when it is not one of ours. */
export function decodeCursor(cursor: string | null | undefined, isValidKey: (key: string) => boolean, field = 'after'): string | undefined {
  if (cursor === null || cursor === undefined) return undefined;
  const decoded = /^[A-Za-z0-9_-]{1,200}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const key = decoded.startsWith(cursorPrefix) ? decoded.slice(cursorPrefix.length) : '';
  if (!isValidKey(key)) throw invalidInput(`${field} is not a valid cursor: use a cursor returned by a previous page`, field);
  return key;
}
