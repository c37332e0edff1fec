/**
 * Authorization directives at the gateway (docs/decisions/0026): `@authenticated`,
 * `@requiresScopes` and `@policy` of the supergraph, enforced after validation and before any
 * planning, on every transport, with Apollo Router's semantics. What the caller may not see is
 * removed from the operation; the rest runs; the removed fields answer `null` with an
 * UNAUTHORIZED_FIELD_OR_TYPE error at their path. When nothing is left, nothing runs and no
 * subgraph is called. The subgraphs keep their own checks (which customer owns an order is
 * theirs to know): this is the first line, not the only one.
 *
 * The caller's scopes are its roles (`customer`, `admin`); policies are named functions of the
 * gateway's configuration. A filtered operation is computed once per document and set of
 * permissions, and kept (bounded).
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Supergraph } from '@apollo/federation-internals';
import { LRUCache } from 'lru-cache';
import type { Identity } from '../../platform/identity/identity.ts';
import { completeResult } from '../authorization/completion.ts';
import { filterOperation, type CallerAuthorization, type FilteredOperation } from '../authorization/filter.ts';
import { authorizationRulesOf, supportedSupergraphFeatures } from '../authorization/rules.ts';
import type { AdmittedOperation, GatewayPlugin, OperationRewrite } from '../pipeline/plugin.ts';

/** Who a policy decides about. */
export interface PolicyCaller {
  readonly identity: Identity;
  /** The caller's scopes (its roles). */
  readonly scopes: ReadonlySet<string>;
  /** The request's headers (HTTP) or the WebSocket upgrade request's. */
  readonly headers: IncomingHttpHeaders;
}

/** A named policy of `@policy(policies: …)`: true when it holds for the caller. A policy that throws refuses the operation (503). */
export type Policy = (caller: PolicyCaller) => boolean | Promise<boolean>;

/**
 * The platform's policies. `owner`: the caller may own customer data — a signed-in customer, or
 * an admin (who may read anyone's). Which customer a given order, payment or shipment belongs to
 * is checked by its subgraph: the gateway cannot know it before fetching.
 */
export const defaultPolicies: Readonly<Record<string, Policy>> = {
  owner: ({ identity }) => identity.customerId !== null && (identity.roles.includes('customer') || identity.roles.includes('admin')),
};

export interface AuthorizationOptions {
  /** Policies by name; a policy the supergraph names and this does not define never holds. @default defaultPolicies */
  policies?: Readonly<Record<string, Policy>>;
  /** Filtered operations kept, by document and permissions (least recently used goes first). @default 16 MiB of document text */
  cacheBytes?: number;
}

/** The scopes of an identity: its roles. */
export function scopesOf(identity: Identity): ReadonlySet<string> {
  return new Set(identity.roles);
}

export function authorization(options: AuthorizationOptions & { supergraphSdl: string }): GatewayPlugin {
  const rules = authorizationRulesOf(options.supergraphSdl);
  const policies = options.policies ?? defaultPolicies;
  const enforced = rules.fields.size > 0 || rules.types.size > 0;
  const schema = enforced ? Supergraph.build(options.supergraphSdl, { supportedFeatures: supportedSupergraphFeatures }).apiSchema().toGraphQLJSSchema() : undefined;
  // Keyed by the text and the permissions: the same document of callers with the same
  // permissions filters the same way. An entry costs about its text (AST and paths included).
  const filtered = new LRUCache<string, FilteredOperation & { key: string }>({ maxSize: options.cacheBytes ?? 16 * 1024 * 1024, sizeCalculation: (_entry, key) => key.length * 8 });

  async function callerOf(operation: AdmittedOperation): Promise<CallerAuthorization> {
    const { identity } = operation.connection;
    const scopes = scopesOf(identity);
    const holding = new Set<string>();
    const caller: PolicyCaller = { identity, scopes, headers: operation.headers };
    await Promise.all(
      [...rules.policies].map(async (name) => {
        if (policies[name] && (await policies[name](caller)) === true) holding.add(name);
      }),
    );
    return { authenticated: identity.customerId !== null, scopes, policies: holding };
  }

  return {
    name: 'authorization',
    async onOperation(operation): Promise<OperationRewrite | undefined> {
      if (!schema) return undefined;
      const caller = await callerOf(operation);
      const permissions = JSON.stringify([caller.authenticated, [...caller.scopes].sort(), [...caller.policies].sort()]);
      const cacheKey = `${permissions}\n${operation.operationName ?? ''}\n${operation.source}`;
      let entry = filtered.get(cacheKey);
      if (!entry) {
        const outcome = filterOperation(schema, rules, caller, operation.document, operation.operationName);
        entry = { ...outcome, key: createHash('sha256').update(cacheKey).digest('hex') };
        filtered.set(cacheKey, entry);
      }
      if (entry.removed.length === 0) return undefined;
      const done = entry;
      return { document: done.document, key: done.key, complete: (result) => completeResult(result, done) };
    },
  };
}
