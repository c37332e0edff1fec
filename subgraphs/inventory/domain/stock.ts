/** The inventory's rules for stock adjustments. Pure. */
import { invalidInput } from '../../../platform/errors/domain-error.ts';

export interface StockLevel {
  available: number;
  reserved: number;
}

const maxDelta = 1_000_000;
/** Far below PostgreSQL's integer limit, far above any real warehouse. */
export const maxStockLevel = 1_000_000_000;

export interface StockAdjustment {
  delta: number;
  reason: string;
}

export function checkAdjustment(delta: number, reason: string): StockAdjustment {
  if (!Number.isInteger(delta) || delta === 0) throw invalidInput('delta must be a non-zero whole number', 'delta');
  if (Math.abs(delta) > maxDelta) throw invalidInput(`delta must be between -${maxDelta} and ${maxDelta}`, 'delta');
  const trimmed = reason.trim();
  if (trimmed.length === 0 || trimmed.length > 200) throw invalidInput('reason must be 1–200 characters', 'reason');
  return { delta, reason: trimmed };
}
