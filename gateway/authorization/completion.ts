/**
 * A result of the filtered operation, completed for the operation the client sent (as Router
 * does): `null` where a removed field was, propagated up to the nearest nullable position as
 * GraphQL does for a non-null field, and one UNAUTHORIZED_FIELD_OR_TYPE error per removed field at
 * its path. The result is changed in place: it is fresh for each execution and each event.
 */
import { GraphQLError } from 'graphql';
import type { ExecutionResult } from '../pipeline/plugin.ts';
import { responsePathOf, typenameAlias, type FilteredOperation, type PathStep } from './filter.ts';

/** Apollo Router's code for a field its authorization directives removed. */
export const unauthorizedCode = 'UNAUTHORIZED_FIELD_OR_TYPE';

type JsonObject = Record<string, unknown>;

export function completeResult(result: ExecutionResult, filtered: FilteredOperation): ExecutionResult {
  let data = result.data;
  if (data) {
    for (const removed of filtered.removed) {
      if (nullObject(data, removed.steps, 0)) {
        data = null;
        break;
      }
    }
    if (data) for (const steps of filtered.typenameAt) forEachObject(data, steps, 0, (object) => delete object[typenameAlias]);
  }
  const errors = filtered.removed
    .filter((removed) => removed.reported)
    .map((removed) => new GraphQLError('Unauthorized field or type', { path: responsePathOf(removed.steps), extensions: { code: unauthorizedCode } }));
  return { ...result, data, errors: [...(result.errors ?? []), ...errors] };
}

/**
 * Puts null where the field `steps[index…]` leads to was removed, in `object`; true when `object`
 * itself must become null (the field, or everything on the way, is non-null).
 */
function nullObject(object: JsonObject, steps: readonly PathStep[], index: number): boolean {
  const step = steps[index]!;
  if (step.on && !step.on.has(String(object[typenameAlias] ?? object.__typename))) return false;
  if (index === steps.length - 1) {
    // Present: the same response key was selected elsewhere, where the caller may see it.
    if (step.key in object) return false;
    if (step.nullable[0]) object[step.key] = null;
    return !step.nullable[0];
  }
  const value = object[step.key];
  if (value === null || value === undefined) return false;
  if (!nullValue(value, steps, index, 0)) return false;
  if (step.nullable[0]) object[step.key] = null;
  return !step.nullable[0];
}

/** Like nullObject for the value of `steps[index]` at list depth `depth`. */
function nullValue(value: unknown, steps: readonly PathStep[], index: number, depth: number): boolean {
  const step = steps[index]!;
  if (depth === step.nullable.length - 1) return typeof value === 'object' && value !== null && nullObject(value as JsonObject, steps, index + 1);
  if (!Array.isArray(value)) return false;
  for (let position = 0; position < value.length; position++) {
    const item: unknown = value[position];
    if (item === null || !nullValue(item, steps, index, depth + 1)) continue;
    if (!step.nullable[depth + 1]) return true;
    value[position] = null;
  }
  return false;
}

/** Calls `visit` with every object the field `steps` leads to holds (lists expanded). */
function forEachObject(object: JsonObject, steps: readonly PathStep[], index: number, visit: (object: JsonObject) => void): void {
  if (index === steps.length) return visit(object);
  const each = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(each);
    else if (typeof value === 'object' && value !== null) forEachObject(value as JsonObject, steps, index + 1, visit);
  };
  each(object[steps[index]!.key]);
}
