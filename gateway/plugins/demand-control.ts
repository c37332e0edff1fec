/**
 * Demand control: every operation's static cost is estimated from the supergraph's `@cost` and
 * `@listSize` (platform/graphql/cost.ts) before it is planned.
 * - Over `maxCost`: OPERATION_TOO_COSTLY (HTTP 400), before any subgraph is called.
 * - Each caller has a budget of cost points per time window, shared by every gateway replica
 *   through Redis when one is configured: over it, COST_BUDGET_EXCEEDED (HTTP 429, Retry-After).
 * - With the request header `x-commerce-cost: true`, the response's `extensions.cost` reports
 *   `{ estimated, max }` (and `remaining`, the caller's budget left in this window).
 * Why these numbers and not others: docs/decisions/0010-demand-control.md.
 */
import type { Redis } from 'ioredis';
import { intFromEnv } from '../../platform/config.ts';
import { createCostModel, estimateOperationCost, type CostModel, type CostModelOptions } from '../../platform/graphql/cost.ts';
import { createLogger } from '../../platform/logging/logger.ts';
import { closeRedis, connectRedis, firstConnection } from '../../platform/redis/connection.ts';
import { retryAfterSecondsOf, sharedLimiter } from '../../platform/redis/limiter.ts';
import type { AdmittedOperation, GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

type Env = Record<string, string | undefined>;

export const DemandControlCode = {
  /** The operation's estimated cost is above the maximum for one operation. */
  OPERATION_TOO_COSTLY: 'OPERATION_TOO_COSTLY',
  /** The caller spent its cost budget for the current window. */
  COST_BUDGET_EXCEEDED: 'COST_BUDGET_EXCEEDED',
} as const;

/** Request header asking for the cost in the response's `extensions.cost`. */
export const costReportHeader = 'x-commerce-cost';

export interface DemandControlOptions {
  /** The supergraph SDL, whose `@cost` / `@listSize` directives price the operations; or a model built from it. */
  schema: string | CostModel;
  /**
   * Operations estimated above this are refused with OPERATION_TOO_COSTLY. The largest operation
   * of our README and tests costs about 5,100; five nested `products(first: 100)` cost 10^10.
   * @default 10_000
   */
  maxCost?: number;
  /**
   * Cost points each caller may spend per window; 0 turns budgets off. At least `maxCost`, so
   * that every admissible operation fits in a fresh window.
   * @default 1_000_000
   */
  budget?: number;
  /** Length of a budget window, in seconds. @default 60 */
  budgetWindowSeconds?: number;
  /**
   * Where budgets are kept: a Redis URL (the plugin connects, and disconnects on stop) or a
   * connected ioredis client (the caller keeps ownership), so that gateway replicas share them.
   * Unset: in this process's memory. While Redis is unreachable, each replica counts in memory.
   * @default undefined
   */
  redis?: string | Redis;
  /** Prefix of the budget keys in Redis. @default 'gateway:cost-budget' */
  keyPrefix?: string;
  /** How the cost model sizes lists and mutations (`defaultListSize` @default 10, `mutationWeight` @default 10). */
  costModel?: CostModelOptions;
}

/** The options a deployment configures; the gateway adds the schema it serves. */
export type DemandControlSettings = Omit<DemandControlOptions, 'schema'>;

/**
 * The options from the environment: `GATEWAY_MAX_COST`, `GATEWAY_COST_BUDGET`,
 * `GATEWAY_COST_BUDGET_WINDOW_SECONDS`, `REDIS_URL`. The schema is the caller's to add.
 */
export function demandControlOptionsFromEnv(env: Env = process.env): DemandControlSettings {
  return {
    maxCost: intFromEnv('GATEWAY_MAX_COST', 10_000, env),
    budget: intFromEnv('GATEWAY_COST_BUDGET', 1_000_000, env),
    budgetWindowSeconds: intFromEnv('GATEWAY_COST_BUDGET_WINDOW_SECONDS', 60, env),
    ...(env.REDIS_URL ? { redis: env.REDIS_URL } : {}),
  };
}

export interface DemandControl extends GatewayPlugin {
  readonly model: CostModel;
  /** The operation's estimated cost, as `onOperation` computes it. */
  estimate(operation: Pick<AdmittedOperation, 'document' | 'operation' | 'variables'>): number;
}

export function demandControl(options: DemandControlOptions): DemandControl {
  if (!options?.schema) throw new Error('demandControl needs the supergraph SDL as options.schema: its @cost and @listSize price the operations');
  const maxCost = options.maxCost ?? 10_000;
  const budget = options.budget ?? 1_000_000;
  const windowSeconds = options.budgetWindowSeconds ?? 60;
  // Fail at start-up, not on the first request.
  if (!Number.isInteger(maxCost) || maxCost < 1) throw new Error(`maxCost must be a positive integer, got ${maxCost}`);
  if (!Number.isInteger(budget) || budget < 0) throw new Error(`budget must be a non-negative integer, got ${budget}`);
  if (budget > 0 && budget < maxCost) throw new Error(`budget (${budget}) must be at least maxCost (${maxCost}), or 0 to turn budgets off`);
  if (!Number.isInteger(windowSeconds) || windowSeconds < 1) throw new Error(`budgetWindowSeconds must be a positive integer, got ${windowSeconds}`);

  const model = typeof options.schema === 'string' ? createCostModel(options.schema, options.costModel) : options.schema;
  const budgets = budget > 0 ? budgetStore({ points: budget, windowSeconds, keyPrefix: options.keyPrefix ?? 'gateway:cost-budget', redis: options.redis }) : undefined;
  const estimate: DemandControl['estimate'] = ({ document, operation, variables }) => estimateOperationCost(model, document, operation, variables);

  return {
    name: 'demand-control',
    model,
    estimate,
    async onOperation(admitted) {
      const estimated = estimate(admitted);
      const report = wantsCostReport(admitted.headers[costReportHeader]) ? { estimated, max: maxCost } : undefined;
      if (report) admitted.responseExtensions.cost = report;
      if (estimated > maxCost) {
        throw new GatewayRefusal(
          DemandControlCode.OPERATION_TOO_COSTLY,
          `The operation's estimated cost is ${grouped(estimated)}, above the limit of ${grouped(maxCost)}: ask for smaller pages (first) or fewer nested lists`,
          { status: 400, details: { cost: estimated, maxCost } },
        );
      }
      if (!budgets) return;
      // Even a free operation spends a point: budgets also bound how often a caller may ask.
      const spent = await budgets.spend(admitted.connection.caller, Math.max(1, Math.ceil(estimated)));
      if (spent.refused) {
        throw new GatewayRefusal(
          DemandControlCode.COST_BUDGET_EXCEEDED,
          `Cost budget spent: at most ${grouped(budget)} points per ${windowSeconds} s per caller; try again in ${spent.retryAfterSeconds} s`,
          { status: 429, retryAfterSeconds: spent.retryAfterSeconds, details: { cost: estimated, budget, windowSeconds } },
        );
      }
      if (report) admitted.responseExtensions.cost = { ...report, remaining: spent.remaining };
    },
    async stop() {
      await budgets?.close();
    },
  };
}

/** 12345678 → "12,345,678". Not toLocaleString: its first call loads ICU data, tens of milliseconds. */
function grouped(value: number): string {
  return String(Math.round(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function wantsCostReport(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header[0] : header;
  return value?.trim().toLowerCase() === 'true';
}

type Spent = { refused: false; remaining: number } | { refused: true; retryAfterSeconds: number };

interface BudgetStore {
  spend(caller: string, points: number): Promise<Spent>;
  close(): Promise<void>;
}

interface BudgetStoreOptions {
  points: number;
  windowSeconds: number;
  keyPrefix: string;
  redis: string | Redis | undefined;
}

const log = createLogger('gateway.demand-control');

/** Budgets per caller: in Redis when given one (memory as its stand-in while it is down), else in memory. */
function budgetStore({ points, windowSeconds, keyPrefix, redis }: BudgetStoreOptions): BudgetStore {
  const owned = typeof redis === 'string' ? connectRedis(redis, { purpose: 'cost budgets', whileDown: 'budgets are counted per replica until it is back', log }) : undefined;
  const client = owned ?? (redis as Redis | undefined);
  const connected = client ? firstConnection(client, 1_000) : Promise.resolve();
  const limiter = sharedLimiter({ points, duration: windowSeconds, keyPrefix }, client);
  return {
    async spend(caller, cost) {
      await connected;
      try {
        const result = await limiter.consume(caller, cost);
        return { refused: false, remaining: result.remainingPoints };
      } catch (rejection) {
        return { refused: true, retryAfterSeconds: retryAfterSecondsOf(rejection) };
      }
    },
    async close() {
      await closeRedis(owned);
    },
  };
}
