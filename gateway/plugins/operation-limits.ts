/**
 * Operation limits at the gateway: a document's size and tokens are bounded while it is parsed
 * (`limitedParse`, the core's parser), its depth, aliases, root fields, expanded fields,
 * directives and fragment cycles before validation (`operationLimits`, an `onDocument` plugin).
 * Both refuse with HTTP 400 and a code of their own, on every transport, before anything is
 * validated or planned. What counts and why: platform/graphql/operation-limits.ts and
 * docs/decisions/0009-operation-limits.md.
 */
import type { DocumentNode } from 'graphql';
import { intFromEnv } from '../../platform/config.ts';
import {
  checkOperationLimits,
  defaultOperationLimits,
  operationLimitsWith,
  parseWithLimits,
  type LimitViolation,
  type OperationLimits,
} from '../../platform/graphql/operation-limits.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

export type { OperationLimits } from '../../platform/graphql/operation-limits.ts';

function refusalOf(violation: LimitViolation): GatewayRefusal {
  return new GatewayRefusal(violation.code, violation.message, { status: 400, details: { limit: violation.limit, actual: violation.actual } });
}

function withDefaults(limits: Partial<OperationLimits>): OperationLimits {
  return operationLimitsWith(defaultOperationLimits, limits);
}

/**
 * Refuses an operation over the depth, alias, root field, expanded field or directive limits, or
 * whose fragments form a cycle, before validation. Limits not given take
 * `defaultOperationLimits` (each documented with its `@default`).
 */
export function operationLimits(limits: Partial<OperationLimits> = {}): GatewayPlugin {
  const effective = withDefaults(limits);
  return {
    name: 'operation-limits',
    onDocument({ document, operationName }) {
      const violation = checkOperationLimits(document, operationName, effective);
      if (violation) throw refusalOf(violation);
    },
  };
}

/**
 * The core's parser (`CoreOptions.parse`): graphql-js `parse`, refusing a document over
 * `maxDocumentBytes` before reading it and stopping at `maxTokens`, with DOCUMENT_TOO_LARGE and
 * TOO_MANY_TOKENS (HTTP 400). A syntax error is thrown as graphql-js's GraphQLError, which the
 * core answers as GRAPHQL_PARSE_FAILED.
 */
export function limitedParse(limits: Partial<Pick<OperationLimits, 'maxTokens' | 'maxDocumentBytes'>> = {}): (source: string) => DocumentNode {
  const { maxTokens, maxDocumentBytes } = withDefaults(limits);
  return (source) => {
    const parsed = parseWithLimits(source, { maxTokens, maxDocumentBytes });
    if (parsed.violation) throw refusalOf(parsed.violation);
    return parsed.document;
  };
}

/** The gateway's operation limits from its environment; unset variables keep the defaults. */
export function operationLimitsFromEnv(env: Record<string, string | undefined> = process.env): OperationLimits {
  return withDefaults({
    maxDepth: intFromEnv('GATEWAY_MAX_DEPTH', defaultOperationLimits.maxDepth, env),
    maxAliases: intFromEnv('GATEWAY_MAX_ALIASES', defaultOperationLimits.maxAliases, env),
    maxRootFields: intFromEnv('GATEWAY_MAX_ROOT_FIELDS', defaultOperationLimits.maxRootFields, env),
    maxDirectives: intFromEnv('GATEWAY_MAX_DIRECTIVES', defaultOperationLimits.maxDirectives, env),
    maxTokens: intFromEnv('GATEWAY_MAX_TOKENS', defaultOperationLimits.maxTokens, env),
    maxDocumentBytes: intFromEnv('GATEWAY_MAX_DOCUMENT_BYTES', defaultOperationLimits.maxDocumentBytes, env),
    maxFields: intFromEnv('GATEWAY_MAX_FIELDS', defaultOperationLimits.maxFields, env),
  });
}
