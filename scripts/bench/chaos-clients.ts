/**
 * The chaos benchmark's clients, talking to the gateway only, as a shop's web app would:
 * - `graphqlCall` classifies every failure by what a client can branch on: the GraphQL error's
 *   `extensions.code`, else the HTTP status, else the transport error (refused, reset, timeout);
 * - `ErrorTally` counts those codes per phase of the run (per fault);
 * - `OrderLoad` places orders at a steady rate from several customers (tok_visa, 1–3 lines), and
 *   retries a failed order with the SAME idempotency key, as the schema tells clients to: an
 *   order whose answer was lost is then found, not placed twice;
 * - `QueryLoad` browses the catalog and reads "my orders" (every subgraph takes part);
 * - `probeRound` is one placeOrder + both queries, all of which must succeed: recovery is the
 *   first such round after a fault.
 */
import { randomUUID } from 'node:crypto';
import { demoProducts } from '../demo/data.ts';
import { sleep } from './support.ts';
import { randomLines } from './orders.ts';

/** What a client of the gateway sees, by the code it could branch on. */
export interface CallResult<T> {
  data: T | undefined;
  /** Empty when the call fully succeeded. */
  codes: string[];
}

/**
 * One GraphQL request over HTTP. Codes: `extensions.code` of each error (`NO_CODE` without one),
 * `HTTP_<status>` for a non-2xx answer without GraphQL errors, `TRANSPORT_<cause>` when no answer
 * came (`ECONNREFUSED`, `ECONNRESET`, `CLIENT_TIMEOUT` after `timeoutMs`…).
 */
export async function graphqlCall<T>(url: string, query: string, variables: Record<string, unknown>, token: string | undefined, timeoutMs: number): Promise<CallResult<T>> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    return { data: undefined, codes: [transportCode(error)] };
  }
  let body: { data?: T | null; errors?: { extensions?: { code?: unknown } }[] } | undefined;
  try {
    body = (await response.json()) as typeof body;
  } catch (error) {
    return { data: undefined, codes: [response.ok ? transportCode(error) : `HTTP_${response.status}`] };
  }
  const codes = (body?.errors ?? []).map((error) => (typeof error.extensions?.code === 'string' ? error.extensions.code : 'NO_CODE'));
  if (codes.length === 0 && !response.ok) codes.push(`HTTP_${response.status}`);
  if (codes.length === 0 && !body?.data) codes.push('NO_DATA');
  return { data: body?.data ?? undefined, codes };
}

function transportCode(error: unknown): string {
  const { name, cause } = (error ?? {}) as { name?: string; cause?: { code?: string } };
  if (name === 'TimeoutError' || name === 'AbortError') return 'TRANSPORT_CLIENT_TIMEOUT';
  return `TRANSPORT_${cause?.code ?? name ?? 'ERROR'}`;
}

/** Error codes counted per phase of the run; the phase is whatever `phase` says when a call ends. */
export class ErrorTally {
  phase = 'setup';
  readonly #byPhase = new Map<string, Map<string, number>>();
  readonly #calls = new Map<string, number>();

  count(codes: readonly string[]): void {
    this.#calls.set(this.phase, (this.#calls.get(this.phase) ?? 0) + 1);
    if (codes.length === 0) return;
    const counts = this.#byPhase.get(this.phase) ?? new Map<string, number>();
    // One failed call counts each distinct code once: a partial result with 3 SUBGRAPH_UNAVAILABLE
    // errors is one call that a client saw fail.
    for (const code of new Set(codes)) counts.set(code, (counts.get(code) ?? 0) + 1);
    this.#byPhase.set(this.phase, counts);
  }

  errorsOf(phase: string): Map<string, number> {
    return this.#byPhase.get(phase) ?? new Map();
  }

  callsOf(phase: string): number {
    return this.#calls.get(phase) ?? 0;
  }
}

export interface Customer {
  id: string;
  email: string;
  token: string;
}

const authPayload = '{ accessToken customer { id email } }';

/** A new customer as an app makes one: sign up, then sign in (sign-up hands out no token). */
export async function signUp(url: string, email: string, password: string, name: string): Promise<Customer> {
  const result = await graphqlCall<{ signUp: { message: string } }>(
    url,
    'mutation ($email: String!, $password: String!, $name: String!) { signUp(email: $email, password: $password, name: $name) { message } }',
    { email, password, name },
    undefined,
    30_000,
  );
  if (!result.data?.signUp) throw new Error(`signUp ${email} failed: ${result.codes.join(', ')}`);
  return signIn(url, email, password);
}

export async function signIn(url: string, email: string, password: string): Promise<Customer> {
  const result = await graphqlCall<{ signIn: { accessToken: string; customer: { id: string; email: string } } }>(
    url,
    `mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) ${authPayload} }`,
    { email, password },
    undefined,
    30_000,
  );
  if (!result.data?.signIn) throw new Error(`signIn ${email} failed: ${result.codes.join(', ')}`);
  return { id: result.data.signIn.customer.id, email, token: result.data.signIn.accessToken };
}

/** Enough stock of every demo product that no order of the run is rejected for lack of it. */
export async function topUpStock(url: string, admin: Customer, units: number): Promise<void> {
  for (const product of demoProducts) {
    const result = await graphqlCall(url, 'mutation ($id: ID!, $delta: Int!) { adjustStock(productId: $id, delta: $delta, reason: "chaos benchmark stock") { id } }', { id: product.id, delta: units }, admin.token, 30_000);
    if (result.codes.length > 0) throw new Error(`adjustStock ${product.sku} failed: ${result.codes.join(', ')}`);
  }
}

const placeOrderMutation = 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }';
const browseQuery = '{ products(first: 10) { edges { node { id name price stock { available } } } } }';
const myOrdersQuery = '{ me { id orders(first: 5) { edges { node { id status total payment { status } shipment { status } } } } } }';
const address = { name: 'Chaos Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

/** 1–3 demo products, 1–3 units each (every product has stock: topUpStock runs first). */
/** An order as the client asked for it: retried with the same key until placed. */
interface OrderAttempt {
  idempotencyKey: string;
  lines: { productId: string; quantity: number }[];
  attempts: number;
}

/** Codes after which sending the same order again cannot help. */
const finalCodes = new Set(['BAD_USER_INPUT', 'FORBIDDEN', 'UNAUTHENTICATED', 'NOT_FOUND', 'OUT_OF_STOCK', 'PAYMENT_DECLINED']);

export interface PlacedOrder {
  customerId: string;
  /** Wall-clock ms when the client got the id back. */
  at: number;
}

/** Places one order (a new one, or the attempt given again); the id once placed. */
async function placeOrder(url: string, customer: Customer, attempt: OrderAttempt, tally: ErrorTally, timeoutMs: number): Promise<string | undefined> {
  attempt.attempts += 1;
  const result = await graphqlCall<{ placeOrder: { id: string } }>(
    url,
    placeOrderMutation,
    { input: { lines: attempt.lines, shippingAddress: address, paymentToken: 'tok_visa', idempotencyKey: attempt.idempotencyKey } },
    customer.token,
    timeoutMs,
  );
  tally.count(result.codes);
  return result.codes.length === 0 ? result.data?.placeOrder.id : undefined;
}

const newAttempt = (): OrderAttempt => ({ idempotencyKey: randomUUID(), lines: randomLines(), attempts: 0 });

export interface LoadOptions {
  url: string;
  customers: readonly Customer[];
  tally: ErrorTally;
  /** Orders per second over all customers. @default 3 */
  ordersPerSecond?: number;
  /** Queries per second over all customers (browse and my orders, alternately). @default 4 */
  queriesPerSecond?: number;
  /** A client gives a request up after this long. @default 15_000 (the gateway's subgraph timeout is 10 s) */
  timeoutMs?: number;
  /** A retried order is given up after this many attempts. @default 20 */
  maxAttempts?: number;
}

/** The steady load: one order loop and one query loop per customer, paced to the rates given. */
export class Load {
  /** Every order a client got an id for, by id. */
  readonly placed = new Map<string, PlacedOrder>();
  /** Orders given up after `maxAttempts` (their keys), for the report. */
  readonly abandoned: string[] = [];
  #stopping = false;
  readonly #loops: Promise<void>[] = [];

  constructor(private readonly options: LoadOptions) {}

  start(): void {
    const { customers } = this.options;
    const orderGapMs = (1000 * customers.length) / (this.options.ordersPerSecond ?? 3);
    const queryGapMs = (1000 * customers.length) / (this.options.queriesPerSecond ?? 4);
    customers.forEach((customer, index) => {
      // Staggered, so the customers' requests do not all arrive in the same millisecond.
      this.#loops.push(this.#paced(orderGapMs, (index * orderGapMs) / customers.length, () => this.#orderStep(customer)));
      this.#loops.push(this.#paced(queryGapMs, (index * queryGapMs) / customers.length, (n) => this.#queryStep(customer, n)));
    });
  }

  readonly #pending = new Map<string, OrderAttempt>();

  async #orderStep(customer: Customer): Promise<void> {
    const attempt = this.#pending.get(customer.id) ?? newAttempt();
    this.#pending.delete(customer.id);
    const id = await placeOrder(this.options.url, customer, attempt, this.options.tally, this.options.timeoutMs ?? 15_000);
    if (id) {
      this.placed.set(id, { customerId: customer.id, at: Date.now() });
      return;
    }
    if (attempt.attempts >= (this.options.maxAttempts ?? 20)) this.abandoned.push(attempt.idempotencyKey);
    else this.#pending.set(customer.id, attempt);
  }

  async #queryStep(customer: Customer, n: number): Promise<void> {
    const result = await graphqlCall(this.options.url, n % 2 === 0 ? browseQuery : myOrdersQuery, {}, customer.token, this.options.timeoutMs ?? 15_000);
    this.options.tally.count(result.codes);
  }

  /** Runs `step` every `gapMs` (closed loop: a slow step delays the next, never piles up). */
  async #paced(gapMs: number, offsetMs: number, step: (n: number) => Promise<void>): Promise<void> {
    await sleep(offsetMs);
    for (let n = 0; !this.#stopping; n++) {
      const started = Date.now();
      await step(n).catch(() => {});
      await sleep(Math.max(0, gapMs - (Date.now() - started)));
    }
  }

  /**
   * Stops placing orders and querying; waits for the requests in flight. With `finishPending`,
   * orders still being retried are sent again until placed (bounded by `maxAttempts`), so that
   * the invariant check sees what the clients meant to order; not when interrupted.
   */
  async stop(finishPending = true): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#loops);
    for (const [customerId, attempt] of finishPending ? this.#pending : []) {
      const customer = this.options.customers.find((c) => c.id === customerId)!;
      while (attempt.attempts < (this.options.maxAttempts ?? 20)) {
        const id = await placeOrder(this.options.url, customer, attempt, this.options.tally, this.options.timeoutMs ?? 15_000);
        if (id) {
          this.placed.set(id, { customerId, at: Date.now() });
          break;
        }
        await sleep(1_000);
      }
      if (attempt.attempts >= (this.options.maxAttempts ?? 20)) this.abandoned.push(attempt.idempotencyKey);
    }
    this.#pending.clear();
  }
}

/**
 * One recovery probe: placeOrder, browse, my orders — true only when all three fully succeed
 * (no error at all, partial results included). Its order counts as placed like any other.
 */
export async function probeRound(url: string, customer: Customer, tally: ErrorTally, placed: Map<string, PlacedOrder>, timeoutMs: number): Promise<boolean> {
  const orderId = await placeOrder(url, customer, newAttempt(), tally, timeoutMs);
  if (orderId) placed.set(orderId, { customerId: customer.id, at: Date.now() });
  if (!orderId) return false;
  for (const query of [browseQuery, myOrdersQuery]) {
    const result = await graphqlCall(url, query, {}, customer.token, timeoutMs);
    tally.count(result.codes);
    if (result.codes.length > 0) return false;
  }
  return true;
}
