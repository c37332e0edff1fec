/**
 * A child process of `npm run bench -- subscriptions` (scripts/bench/subscriptions.ts), driven
 * over its IPC channel. Two roles, by its first argument:
 *
 * - `clients`: holds subscribers, one WebSocket each, speaking graphql-ws
 *   (`graphql-transport-ws`) by hand with `ws` — the protocol's four messages are all a
 *   subscriber needs, and a thin client keeps the clients' own CPU out of the latencies as far
 *   as possible. For each event it records when it arrived (wall clock, sub-millisecond) and the
 *   order's `updatedAt`.
 * - `listener`: LISTENs on `order_projections` in the orders database and records when each
 *   notification naming an order arrived: the moment the projection of a status change
 *   committed, as any process on the database hears it.
 *
 * Exits when its parent goes away (the IPC channel closes).
 */
import pg from 'pg';
import WebSocket from 'ws';

export interface SubscriberSpec {
  /** Index of the order watched (into the scenario's order list). */
  order: number;
  orderId: string;
  /** The `connection_init` payload: the client's token, or the gateway-signed identity. */
  connectionParams: Record<string, string>;
  /** The `subscribe` message's `extensions`: straight to a subgraph, the subscription's own signed identity. */
  extensions?: Record<string, string>;
}

export type ClientsCommand =
  | { type: 'open'; url: string; query: string; subscribers: SubscriberSpec[]; concurrency: number; timeoutMs: number }
  | { type: 'count' }
  | { type: 'collect' }
  | { type: 'close' }
  /** Forgets the events and counts so far (after a warm-up). */
  | { type: 'reset' };

export type ListenerCommand = { type: 'listen'; databaseUrl: string; channel: string } | { type: 'collect' } | { type: 'stop' };

export interface OpenResult {
  opened: number;
  failed: number;
  /** A few of the failures, for the report. */
  failures: string[];
  ms: number;
}

export interface CountResult {
  /** Subscribers whose first event (the order as it is on subscribing) arrived. */
  initial: number;
  /** Events after the first one, by status. */
  byStatus: Record<string, number>;
  /** Errors or closes that were not asked for. */
  problems: number;
}

export interface CollectResult {
  /** Per event after each subscriber's first: order index, status, arrival (wall ms), Order.updatedAt (wall ms). */
  order: number[];
  status: string[];
  receivedAt: number[];
  updatedAt: number[];
  /** Every subscriber's statuses in arrival order, compressed: sequence → subscribers with it. */
  sequences: Record<string, number>;
  problems: string[];
  cpuMs: number;
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution: performance.now() anchored on the edge
 * of a Date.now() tick (re-anchored on every `open`, so the monotonic clock cannot drift away).
 */
let anchor = 0;
function reanchor(): void {
  const start = Date.now();
  let now = start;
  while (now === start) now = Date.now();
  anchor = now - performance.now();
}
const wallNow = () => anchor + performance.now();
reanchor();

function reply(requestId: number, result: unknown): void {
  process.send!({ requestId, result });
}

function replyError(requestId: number, error: unknown): void {
  process.send!({ requestId, error: (error as Error).stack ?? String(error) });
}

// ── clients ────────────────────────────────────────────────────────────────────────────────

interface Subscriber {
  spec: SubscriberSpec;
  socket?: WebSocket;
  statuses: string[];
  closing: boolean;
  problem?: string;
}

class Clients {
  readonly subscribers: Subscriber[] = [];
  samples: Omit<CollectResult, 'sequences' | 'problems' | 'cpuMs'> = { order: [], status: [], receivedAt: [], updatedAt: [] };
  initial = 0;
  byStatus: Record<string, number> = {};
  problems = 0;

  reset(): void {
    this.samples = { order: [], status: [], receivedAt: [], updatedAt: [] };
    this.initial = 0;
    this.byStatus = {};
    this.problems = 0;
  }

  async open(command: Extract<ClientsCommand, { type: 'open' }>): Promise<OpenResult> {
    reanchor();
    const started = performance.now();
    const batch = command.subscribers.map((spec) => ({ spec, statuses: [], closing: false }) as Subscriber);
    this.subscribers.push(...batch);
    let next = 0;
    let failed = 0;
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: Math.min(command.concurrency, batch.length) }, async () => {
        while (next < batch.length) {
          const subscriber = batch[next++]!;
          try {
            await this.#subscribe(subscriber, command);
          } catch (error) {
            failed += 1;
            subscriber.problem ??= (error as Error).message;
            if (failures.length < 5) failures.push((error as Error).message);
          }
        }
      }),
    );
    return { opened: batch.length - failed, failed, failures, ms: performance.now() - started };
  }

  /** Connects, subscribes, and resolves when the first event (the order as it is) arrived. */
  #subscribe(subscriber: Subscriber, command: Extract<ClientsCommand, { type: 'open' }>): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(() => settle(new Error(`no first event within ${command.timeoutMs} ms`)), command.timeoutMs);
      const problem = (what: string) => {
        if (subscriber.problem) return;
        subscriber.problem = what;
        this.problems += 1;
        settle(new Error(what));
      };
      const socket = new WebSocket(command.url, 'graphql-transport-ws', { perMessageDeflate: false });
      subscriber.socket = socket;
      socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: subscriber.spec.connectionParams })));
      socket.on('message', (data) => {
        const receivedAt = wallNow();
        const message = JSON.parse(data.toString()) as { type: string; id?: string; payload?: any };
        switch (message.type) {
          case 'connection_ack':
            socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: command.query, variables: { id: subscriber.spec.orderId }, ...(subscriber.spec.extensions ? { extensions: subscriber.spec.extensions } : {}) } }));
            return;
          case 'ping':
            socket.send(JSON.stringify({ type: 'pong' }));
            return;
          case 'pong':
            return;
          case 'next': {
            const payload = message.payload as { data?: { orderStatusChanged?: { status: string; updatedAt: string } }; errors?: { message: string; extensions?: { code?: string } }[] };
            const order = payload.data?.orderStatusChanged;
            if (payload.errors?.length || !order) {
              problem(`errors in an event: ${JSON.stringify(payload.errors ?? payload)}`);
              return;
            }
            // An event that keeps the status tells of the payment or shipment (docs/decisions/0031):
            // not a status change, so neither in the sequence nor a latency sample.
            if (subscriber.statuses.at(-1) === order.status) return;
            subscriber.statuses.push(order.status);
            if (subscriber.statuses.length === 1) {
              this.initial += 1;
              settle();
              return;
            }
            this.byStatus[order.status] = (this.byStatus[order.status] ?? 0) + 1;
            this.samples.order.push(subscriber.spec.order);
            this.samples.status.push(order.status);
            this.samples.receivedAt.push(receivedAt);
            this.samples.updatedAt.push(Date.parse(order.updatedAt));
            return;
          }
          case 'error':
            problem(`subscription refused: ${JSON.stringify(message.payload)}`);
            return;
          case 'complete':
            problem('the server completed the subscription');
            return;
          default:
            problem(`unexpected message ${message.type}`);
        }
      });
      socket.on('close', (code, reason) => {
        if (!subscriber.closing) problem(`socket closed ${code} ${reason.toString()}`);
      });
      socket.on('error', (error) => problem(`socket error: ${error.message}`));
    });
  }

  count(): CountResult {
    return { initial: this.initial, byStatus: { ...this.byStatus }, problems: this.problems };
  }

  collect(): CollectResult {
    const sequences: Record<string, number> = {};
    const problems: string[] = [];
    for (const subscriber of this.subscribers) {
      const key = subscriber.statuses.join('→') || '(nothing)';
      sequences[key] = (sequences[key] ?? 0) + 1;
      if (subscriber.problem && problems.length < 10) problems.push(`order ${subscriber.spec.order}: ${subscriber.problem}`);
    }
    const cpu = process.cpuUsage();
    return { ...this.samples, sequences, problems, cpuMs: (cpu.user + cpu.system) / 1000 };
  }

  /** Closes every socket (1000) and waits for the closes (at most 10 s). */
  async close(): Promise<void> {
    const sockets = this.subscribers.flatMap((subscriber) => {
      subscriber.closing = true;
      return subscriber.socket ? [subscriber.socket] : [];
    });
    await Promise.all(
      sockets.map(
        (socket) =>
          new Promise<void>((resolve) => {
            if (socket.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              socket.terminate();
              resolve();
            }, 10_000);
            socket.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
            else socket.close(1000);
          }),
      ),
    );
    this.subscribers.length = 0;
  }
}

// ── listener ───────────────────────────────────────────────────────────────────────────────

class Listener {
  #client: pg.Client | undefined;
  /** Order id → arrival times (wall ms) of the notifications naming it. */
  readonly heard: Record<string, number[]> = {};

  async listen(databaseUrl: string, channel: string): Promise<void> {
    reanchor();
    const client = new pg.Client({ connectionString: databaseUrl });
    client.on('notification', (message) => {
      const at = wallNow();
      for (const id of JSON.parse(message.payload ?? '[]') as string[]) (this.heard[id.toLowerCase()] ??= []).push(at);
    });
    client.on('error', (error) => console.error(`listener: ${error.message}`));
    await client.connect();
    await client.query(`LISTEN ${channel}`);
    this.#client = client;
  }

  async stop(): Promise<void> {
    await this.#client?.end().catch(() => {});
    this.#client = undefined;
  }
}

// ── the channel ────────────────────────────────────────────────────────────────────────────

const role = process.argv[2];
if (!process.send || (role !== 'clients' && role !== 'listener')) {
  console.error('scripts/bench/subscription-clients.ts is started by `npm run bench -- subscriptions`');
  process.exit(2);
}
process.on('disconnect', () => process.exit(0));

if (role === 'clients') {
  const clients = new Clients();
  process.on('message', ({ requestId, command }: { requestId: number; command: ClientsCommand }) => {
    const handle = async () => {
      switch (command.type) {
        case 'open':
          return clients.open(command);
        case 'count':
          return clients.count();
        case 'collect':
          return clients.collect();
        case 'close':
          return clients.close();
        case 'reset':
          return clients.reset();
      }
    };
    handle().then((result) => reply(requestId, result), (error) => replyError(requestId, error));
  });
} else {
  const listener = new Listener();
  process.on('message', ({ requestId, command }: { requestId: number; command: ListenerCommand }) => {
    const handle = async () => {
      switch (command.type) {
        case 'listen':
          return listener.listen(command.databaseUrl, command.channel);
        case 'collect':
          return listener.heard;
        case 'stop':
          return listener.stop();
      }
    };
    handle().then((result) => reply(requestId, result), (error) => replyError(requestId, error));
  });
}
process.send({ ready: true });
