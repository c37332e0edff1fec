/**
 * Issue 9's attacks, each sent to a real gateway in front of real subgraphs on real PostgreSQL
 * (production mode, as deployed): each is refused with its HTTP status (or WebSocket close code)
 * and `extensions.code`, in milliseconds, while an ordinary request sent alongside it still gets
 * its data. The documents are the abuse benchmark's (scripts/bench/abuse-payloads.ts), sized here
 * to cross one limit each.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { defaultOperationLimits as limits } from '../platform/graphql/operation-limits.ts';
import * as attack from '../scripts/bench/abuse-payloads.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

/** "Answered in milliseconds": generous for a shared 2-core machine, far below what planning these took before (7–45 s). */
const promptly = 2_000;
const MiB = 1024 * 1024;

interface Answer {
  status: number;
  headers: Headers;
  errors: { message: string; extensions?: Record<string, any> }[];
  data?: unknown;
  ms: number;
}

/** One POST with a body exactly as given (a browser or curl could send it). */
async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  const since = performance.now();
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const json = (await response.json()) as { errors?: Answer['errors']; data?: unknown };
  return { status: response.status, headers: response.headers, errors: json.errors ?? [], data: json.data, ms: performance.now() - since };
}

const query = (text: string, extra: Record<string, unknown> = {}) => JSON.stringify({ query: text, ...extra });

/** A graphql-ws client spoken by hand, so that every close code and `error` message is seen as sent. */
class Socket {
  readonly ws: WebSocket;
  readonly messages: { id?: string; type: string; payload?: any }[] = [];
  closeInfo: { code: number; reason: string } | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string) {
    this.ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws.on('error', () => {}); // the close event says why
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      }),
    );
    this.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { id?: string; type: string; payload?: unknown };
      if (message.type === 'ping') this.ws.send(JSON.stringify({ type: 'pong' }));
      this.messages.push(message);
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState === WebSocket.OPEN) return resolve();
      this.ws.once('open', () => resolve());
      this.ws.once('close', () => reject(new Error(`closed before opening (${this.closeInfo?.code})`)));
    });
  }

  /** Sends connection_init; resolves true on connection_ack, false when the socket is closed instead. */
  async initialize(payload: Record<string, unknown> = {}): Promise<boolean> {
    await this.opened();
    this.ws.send(JSON.stringify({ type: 'connection_init', payload }));
    return waitFor('connection_ack or close', () => (this.messages.some((m) => m.type === 'connection_ack') ? true : this.closeInfo ? false : undefined), 10_000);
  }

  subscribe(id: string, queryText: string): void {
    this.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query: queryText } }));
  }

  /** The first message for `id` (an `error` for a refusal). */
  answerTo(id: string, timeoutMs = 10_000): Promise<{ type: string; payload?: any }> {
    return waitFor(`an answer to subscription ${id}`, () => this.messages.find((m) => m.id === id), timeoutMs);
  }

  close(): void {
    this.ws.terminate();
  }
}

describe('the gateway under attack', () => {
  let stack: Stack;
  let url: string;
  let wsUrl: string;
  const sockets: Socket[] = [];
  const socket = (token?: string) => {
    const opened = new Socket(wsUrl);
    sockets.push(opened);
    return { socket: opened, init: token ? { Authorization: `Bearer ${token}` } : {} };
  };

  beforeAll(async () => {
    stack = await startStack({ production: true });
    await seedDemoData(stack.databaseUrls);
    url = stack.gatewayUrl;
    wsUrl = url.replace(/^http/, 'ws');
  }, 120_000);
  afterEach(async () => {
    for (const opened of sockets.splice(0)) opened.close();
    // Closed sockets give their caller's slots back once the gateway has seen them go.
    await waitFor('every client socket to be gone', () => (stack.gateway.subscriptionStats().webSocketConnections === 0 ? true : undefined));
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** Runs an attack with an ordinary request alongside; the ordinary one must get its data. */
  async function alongsideAnOrdinaryRequest<T>(attackRun: Promise<T>): Promise<T> {
    const [result, ordinary] = await Promise.all([attackRun, graphql(url, { query: attack.productListQuery })]);
    expect(ordinary.status).toBe(200);
    expect(ordinary.errors).toBeUndefined();
    expect((ordinary.data as any).products.edges).toHaveLength(5);
    return result;
  }

  function expectRefused(answer: Answer, status: number, code: string): void {
    expect({ status: answer.status, codes: answer.errors.map((error) => error.extensions?.code) }).toEqual({ status, codes: [code] });
    expect(answer.data ?? null).toBeNull();
    expect(answer.ms).toBeLessThan(promptly);
  }

  describe('over HTTP', () => {
    it('refuses a query nested 300 levels deep with OPERATION_TOO_DEEP (HTTP 400), naming the limit', async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.deepQuery(300))));
      expectRefused(answer, 400, 'OPERATION_TOO_DEEP');
      expect(answer.errors[0]!.message).toMatch(/300/);
    });

    it("refuses issue 9's five-level products(first: 100) bomb before planning", async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.nestedProducts(5))));
      expect(answer.status).toBe(400);
      expect(['OPERATION_TOO_DEEP', 'OPERATION_TOO_COSTLY']).toContain(answer.errors[0]?.extensions?.code);
      expect(answer.ms).toBeLessThan(promptly);
    });

    it('refuses a two-level products(first: 100) bomb within the depth limit with OPERATION_TOO_COSTLY, saying its cost', async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.nestedProducts(2))));
      expectRefused(answer, 400, 'OPERATION_TOO_COSTLY');
      expect(answer.errors[0]!.extensions).toMatchObject({ cost: expect.any(Number), maxCost: expect.any(Number) });
      expect(answer.errors[0]!.extensions!.cost).toBeGreaterThan(answer.errors[0]!.extensions!.maxCost);
    });

    it('refuses more aliases than the limit with TOO_MANY_ALIASES (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.nestedAliases(limits.maxAliases + 10)))), 400, 'TOO_MANY_ALIASES');
    });

    it("refuses issue 9's 1,000 aliases of products(first: 100) with a limit's code (HTTP 400)", async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.rootAliases(1000))));
      expect(answer.status).toBe(400);
      expect(['TOO_MANY_ALIASES', 'TOO_MANY_ROOT_FIELDS', 'TOO_MANY_TOKENS', 'DOCUMENT_TOO_LARGE']).toContain(answer.errors[0]?.extensions?.code);
      expect(answer.ms).toBeLessThan(promptly);
    });

    it('refuses more root fields than the limit with TOO_MANY_ROOT_FIELDS (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.manyRootFields(limits.maxRootFields + 5)))), 400, 'TOO_MANY_ROOT_FIELDS');
    });

    it('refuses more directives than the limit with TOO_MANY_DIRECTIVES (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.manyDirectives(limits.maxDirectives + 10)))), 400, 'TOO_MANY_DIRECTIVES');
    });

    it('refuses a flood of one-byte tokens over the limit, within the size limit, with TOO_MANY_TOKENS (HTTP 400)', async () => {
      const flood = attack.tokenFlood(limits.maxTokens + 1_000);
      expect(flood.length).toBeLessThan(limits.maxDocumentBytes);
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(flood))), 400, 'TOO_MANY_TOKENS');
    });

    it('refuses a document over the size limit with DOCUMENT_TOO_LARGE (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.hugeDocument(limits.maxDocumentBytes + 8_000)))), 400, 'DOCUMENT_TOO_LARGE');
    });

    it('refuses a 120,000-byte document, just under the 128 KiB body limit, with DOCUMENT_TOO_LARGE (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.hugeDocument(120_000)))), 400, 'DOCUMENT_TOO_LARGE');
    });

    it('refuses a body over the 128 KiB body limit with REQUEST_TOO_LARGE (HTTP 413), without reading it', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.hugeDocument(2 * MiB)))), 413, 'REQUEST_TOO_LARGE');
    });

    it('refuses a 2 KiB fragment bomb, counted as expanded (2 × 10^13 fields), with OPERATION_TOO_LARGE (HTTP 400)', async () => {
      const bomb = attack.fragmentBomb(10, 20);
      expect(bomb.length).toBeLessThan(3 * 1024);
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(bomb))), 400, 'OPERATION_TOO_LARGE');
    });

    it('refuses fragments that spread each other with FRAGMENT_CYCLE (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.fragmentCycle))), 400, 'FRAGMENT_CYCLE');
    });

    it('answers an operationName that names no operation with BAD_REQUEST (HTTP 400), not 500', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, query(attack.productListQuery, { operationName: 'Nope' }))), 400, 'BAD_REQUEST');
    });

    it('refuses a NUL byte in a text argument with BAD_USER_INPUT naming the argument', async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.nulInLiteral)));
      expectRefused(answer, 400, 'BAD_USER_INPUT');
      expect(answer.errors[0]!.extensions!.field).toMatch(/search/);
    });

    it('refuses a NUL byte in a variable with BAD_USER_INPUT naming the variable', async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, JSON.stringify(attack.nulInVariable)));
      expectRefused(answer, 400, 'BAD_USER_INPUT');
      expect(answer.errors[0]!.extensions!.field).toMatch(/search/);
    });

    it('refuses a batch of 1,000 operations in one body with BAD_REQUEST (HTTP 400)', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, attack.batchBody(1000))), 400, 'BAD_REQUEST');
    });

    it('refuses a variable nested 10,000 objects deep with BAD_REQUEST (HTTP 400) before parsing the JSON', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, attack.deeplyNestedVariables(10_000))), 400, 'BAD_REQUEST');
    });

    it('refuses a variable nested deeper than its input type with BAD_USER_INPUT (HTTP 400), without an internal error', async () => {
      expectRefused(await alongsideAnOrdinaryRequest(post(url, attack.deeplyNestedVariables(50))), 400, 'BAD_USER_INPUT');
    });
  });

  describe('over graphql-ws', () => {
    it('closes a socket that sends a message over the 128 KiB limit with 1009 (message too big)', async () => {
      const { socket: attacker } = socket();
      await attacker.opened();
      attacker.ws.send('x'.repeat(2 * MiB));
      const closed = await alongsideAnOrdinaryRequest(attacker.closed);
      expect(closed.code).toBe(1009);
    });

    it('refuses a subscription nested 300 deep with an error message OPERATION_TOO_DEEP, and the socket stays usable', async () => {
      const { socket: attacker, init } = socket();
      expect(await attacker.initialize(init)).toBe(true);
      attacker.subscribe('deep', attack.deepSubscription(300));
      const answer = await alongsideAnOrdinaryRequest(attacker.answerTo('deep'));
      expect(answer.type).toBe('error');
      expect(answer.payload.map((error: any) => error.extensions?.code)).toEqual(['OPERATION_TOO_DEEP']);
      attacker.subscribe('cycle', `subscription { myOrderUpdates { id ...A } } fragment A on Order { ...B } fragment B on Order { ...A }`);
      expect((await attacker.answerTo('cycle')).payload[0].extensions.code).toBe('FRAGMENT_CYCLE');
      expect(attacker.closeInfo).toBeUndefined();
    });

    it('refuses a cost-bomb subscription with an error message OPERATION_TOO_COSTLY before subscribing upstream', async () => {
      const { socket: attacker, init } = socket(await stack.tokenFor({ customerId: randomUUID() }));
      expect(await attacker.initialize(init)).toBe(true);
      const upstreamBefore = stack.gateway.subscriptionStats().upstreamSubscriptions;
      attacker.subscribe('bomb', attack.nestedProductsSubscription(2));
      const answer = await alongsideAnOrdinaryRequest(attacker.answerTo('bomb'));
      expect(answer.type).toBe('error');
      expect(answer.payload.map((error: any) => error.extensions?.code)).toEqual(['OPERATION_TOO_COSTLY']);
      expect(stack.gateway.subscriptionStats().upstreamSubscriptions).toBe(upstreamBefore);
    });

    it('refuses a 120 KiB subscribe message with DOCUMENT_TOO_LARGE, and the same caller\'s next ones, weighed by size, with TOO_MANY_OPERATIONS before parsing', async () => {
      const { socket: attacker, init } = socket(await stack.tokenFor({ customerId: randomUUID() }));
      expect(await attacker.initialize(init)).toBe(true);
      for (let n = 0; n < 5; n++) attacker.subscribe(`big-${n}`, attack.invalidSubscription(n, 120 * 1024));
      const answers = await alongsideAnOrdinaryRequest(Promise.all(Array.from({ length: 5 }, (_, n) => attacker.answerTo(`big-${n}`))));
      // 121 points each against 200 per 10 s: the first is parsed (and refused), the rest are not.
      expect(answers.map((answer) => [answer.type, answer.payload[0]?.extensions?.code])).toEqual([
        ['error', 'DOCUMENT_TOO_LARGE'],
        ...Array.from({ length: 4 }, () => ['error', 'TOO_MANY_OPERATIONS']),
      ]);
      expect(attacker.closeInfo).toBeUndefined();
    });

    it('keeps no invalid document in the document cache: 50 distinct invalid subscriptions leave it as it was', async () => {
      // Ordinary traffic first, so that its own (valid) document is cached before counting.
      await alongsideAnOrdinaryRequest(Promise.resolve());
      const before = stack.gateway.documentCache();
      const { socket: attacker, init } = socket(await stack.tokenFor({ customerId: randomUUID() }));
      expect(await attacker.initialize(init)).toBe(true);
      // 1 KiB each: 2 points of the caller's 200 per 10 s, so every one is parsed and validated.
      for (let n = 0; n < 50; n++) attacker.subscribe(`poison-${n}`, attack.invalidSubscription(n, 1024));
      const answers = await alongsideAnOrdinaryRequest(Promise.all(Array.from({ length: 50 }, (_, n) => attacker.answerTo(`poison-${n}`))));
      expect(new Set(answers.map((answer) => `${answer.type} ${answer.payload[0]?.extensions?.code}`))).toEqual(new Set(['error GRAPHQL_VALIDATION_FAILED']));
      expect(stack.gateway.documentCache()).toEqual(before);
    });

    it('closes the connection beyond 20 from one anonymous address with 4429 (TOO_MANY_CONNECTIONS)', async () => {
      const admitted = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const { socket: held, init } = socket();
          return held.initialize(init);
        }),
      );
      expect(admitted.every(Boolean)).toBe(true);
      const { socket: oneTooMany, init } = socket();
      const acknowledged = await alongsideAnOrdinaryRequest(oneTooMany.initialize(init));
      expect(acknowledged).toBe(false);
      expect(oneTooMany.closeInfo!.code).toBe(4429);
      expect(oneTooMany.closeInfo!.reason).toMatch(/too many connections/i);
    });

    it('refuses the 101st subscription on one socket with TOO_MANY_SUBSCRIPTIONS, keeping the first 100', async () => {
      const { socket: attacker, init } = socket(await stack.tokenFor({ customerId: randomUUID() }));
      expect(await attacker.initialize(init)).toBe(true);
      for (let n = 0; n < 100; n++) attacker.subscribe(`s-${n}`, 'subscription { myOrderUpdates { id status } }');
      await waitFor('100 subscriptions being served', () => (stack.gateway.subscriptionStats().clients >= 100 ? true : undefined));
      attacker.subscribe('s-100', 'subscription { myOrderUpdates { id status } }');
      const answer = await alongsideAnOrdinaryRequest(attacker.answerTo('s-100'));
      expect(answer.type).toBe('error');
      expect(answer.payload[0].extensions.code).toBe('TOO_MANY_SUBSCRIPTIONS');
      expect(attacker.messages.filter((message) => message.type === 'error')).toHaveLength(1);
      expect(attacker.closeInfo).toBeUndefined();
    });

    it('refuses operations beyond 200 per 10 s from one caller with TOO_MANY_OPERATIONS before parsing them, and says when to retry', async () => {
      const { socket: attacker, init } = socket(await stack.tokenFor({ customerId: randomUUID() }));
      expect(await attacker.initialize(init)).toBe(true);
      // Distinct invalid documents: each would cost parsing and validation.
      for (let n = 0; n < 210; n++) attacker.subscribe(`flood-${n}`, `subscription Flood${n} { noSuchField${n} }`);
      const answers = await alongsideAnOrdinaryRequest(Promise.all(Array.from({ length: 210 }, (_, n) => attacker.answerTo(`flood-${n}`))));
      const codes = answers.map((answer) => answer.payload[0]?.extensions?.code);
      expect(codes.slice(0, 200).every((code) => code === 'GRAPHQL_VALIDATION_FAILED')).toBe(true);
      expect(new Set(codes.slice(200))).toEqual(new Set(['TOO_MANY_OPERATIONS']));
      expect(answers[205]!.payload[0].extensions.retryAfter).toBeGreaterThanOrEqual(1);
      expect(attacker.closeInfo).toBeUndefined();
    });

    it('cuts off a client that trickles its request (slowloris) instead of holding its socket', async () => {
      const { connect } = await import('node:net');
      const { port } = new URL(url);
      const client = connect(Number(port), '127.0.0.1');
      client.on('error', () => {});
      const ended = new Promise<number>((resolve) => client.once('close', () => resolve(performance.now())));
      const since = performance.now();
      client.write('POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');
      const trickle = setInterval(() => client.write(' '), 1_000);
      try {
        const closedAt = await ended;
        // The gateway's request timeout (10 s), swept every second; Node's default would be 300 s.
        expect(closedAt - since).toBeLessThan(20_000);
      } finally {
        clearInterval(trickle);
        client.destroy();
      }
    }, 30_000);
  });

  describe('over multipart HTTP and Server-Sent Events', () => {
    const multipart = 'multipart/mixed;subscriptionSpec="1.0"';

    it('answers a cost-bomb multipart subscription with a JSON 400 OPERATION_TOO_COSTLY before any stream starts', async () => {
      const token = await stack.tokenFor({ customerId: randomUUID() });
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.nestedProductsSubscription(2)), { accept: multipart, authorization: `Bearer ${token}` }));
      expect(answer.headers.get('content-type')).toMatch(/application\/json/);
      expectRefused(answer, 400, 'OPERATION_TOO_COSTLY');
    });

    it('answers an SSE subscription nested 300 deep with a JSON 400 OPERATION_TOO_DEEP before any stream starts', async () => {
      const answer = await alongsideAnOrdinaryRequest(post(url, query(attack.deepSubscription(300)), { accept: 'text/event-stream' }));
      expect(answer.headers.get('content-type')).toMatch(/application\/json/);
      expectRefused(answer, 400, 'OPERATION_TOO_DEEP');
    });

    it("refuses a caller's 21st stream with a JSON 429 TOO_MANY_CONNECTIONS and Retry-After", async () => {
      const token = await stack.tokenFor({ customerId: randomUUID() });
      const controllers: AbortController[] = [];
      const open = () => {
        const controller = new AbortController();
        controllers.push(controller);
        return fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: multipart, authorization: `Bearer ${token}` },
          body: query('subscription { myOrderUpdates { id status } }'),
          signal: controller.signal,
        });
      };
      try {
        const streams = await Promise.all(Array.from({ length: 20 }, open));
        expect(streams.map((response) => response.status)).toEqual(Array.from({ length: 20 }, () => 200));
        const since = performance.now();
        const refused = await alongsideAnOrdinaryRequest(open());
        const body = (await refused.json()) as { errors: { extensions: { code: string } }[] };
        expect({ status: refused.status, code: body.errors[0]!.extensions.code }).toEqual({ status: 429, code: 'TOO_MANY_CONNECTIONS' });
        expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(performance.now() - since).toBeLessThan(promptly);
      } finally {
        for (const controller of controllers) controller.abort();
        await waitFor('every stream to end', () => (stack.gateway.subscriptionStats().httpStreams === 0 ? true : undefined));
      }
    });
  });
});
