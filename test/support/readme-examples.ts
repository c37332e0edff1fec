/**
 * The README's GraphQL examples, run the way a newcomer runs them in Apollo Sandbox: every
 * ```graphql block of README.md, top to bottom, against a running gateway. A block that is not
 * meant to run (a schema excerpt) takes another fence language, e.g. ```graphql-schema.
 *
 * What the reader does by hand (a token in the Headers tab, values in the Variables panel, running
 * a query again until the order moves on) is said, for each block, by an HTML comment on the line
 * before its fence, which a reader of README.md's source can follow too:
 *
 *   <!-- example: as customer@example.com; $id = Place placeOrder.id; until order.status = CONFIRMED -->
 *
 * - `as <email>`: sent with the access token that the latest block signing in `<email>` answered
 *   (a `signIn(email: "…")` whose selection has `accessToken`). Without it, sent anonymously.
 * - `$<name> = <Operation> <path>`: the variable, taken from the latest answer of the operation so
 *   named. A path is field names and indexes joined by dots; `[field.path=value]` picks the first
 *   element of a list that matches (`products.edges[node.inStock=true].node.id`).
 * - `until <path> = <value>`: a query is run again, a subscription listened to, until its data at
 *   `<path>` is `<value>` (a minute at most: the saga and the projections take a moment).
 * - `error <CODE>`: the block shows an error; its answer must carry that `extensions.code`.
 *
 * Every other block must answer with data and no error, each variable must have a source, and a
 * clause this file does not know fails the run: the README cannot drift from what runs.
 */
import { Kind, parse, type FieldNode, type OperationDefinitionNode } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { errorCodes, graphql, type GraphQLResponse } from './graphql.ts';

export interface ReadmeExample {
  /** 1-based line of the opening fence, for messages a reader can find. */
  line: number;
  operation: OperationDefinitionNode;
  text: string;
  as?: string;
  variables: Record<string, { operation: string; path: string }>;
  until?: { path: string; value: string };
  error?: string;
}

/** How long an `until` waits: an order is confirmed or delivered within seconds on an idle machine. */
const untilTimeoutMs = 60_000;

export function readmeExamples(markdown: string): ReadmeExample[] {
  const lines = markdown.split('\n');
  const examples: ReadmeExample[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```graphql\s*$/.test(lines[i]!)) continue;
    const end = lines.findIndex((line, j) => j > i && line.startsWith('```'));
    if (end < 0) throw new Error(`README line ${i + 1}: the graphql block is not closed`);
    const text = lines.slice(i + 1, end).join('\n');
    const operations = parse(text).definitions.filter((definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION);
    // Sandbox runs one operation at a time; one per block keeps "run the blocks in order" unambiguous.
    if (operations.length !== 1) throw new Error(`README line ${i + 1}: a block holds one operation, this one ${operations.length}`);
    examples.push({ line: i + 1, operation: operations[0]!, text, ...clauses(lines[i - 1] ?? '', i + 1) });
    i = end;
  }
  return examples;
}

function clauses(comment: string, line: number): Omit<ReadmeExample, 'line' | 'operation' | 'text'> {
  const parsed: Omit<ReadmeExample, 'line' | 'operation' | 'text'> = { variables: {} };
  const body = /^<!--\s*example:(.*?)-->\s*$/.exec(comment)?.[1];
  if (body === undefined) return parsed;
  for (const clause of body.split(';').map((part) => part.trim()).filter(Boolean)) {
    let match: RegExpExecArray | null;
    if ((match = /^as (\S+@\S+)$/.exec(clause))) parsed.as = match[1];
    else if ((match = /^\$(\w+) = (\w+) (\S+)$/.exec(clause))) parsed.variables[match[1]!] = { operation: match[2]!, path: match[3]! };
    else if ((match = /^until (\S+) = (\S+)$/.exec(clause))) parsed.until = { path: match[1]!, value: match[2]! };
    else if ((match = /^error ([A-Z_]+)$/.exec(clause))) parsed.error = match[1];
    else throw new Error(`README line ${line - 1}: unknown example clause "${clause}"`);
  }
  return parsed;
}

/** The value at `path` in `value`; undefined when any step is missing. */
export function at(value: unknown, path: string): unknown {
  for (const [, field, filter] of path.matchAll(/([^.[\]]+)|\[([^\]]+)\]/g)) {
    if (filter !== undefined) {
      const [filterPath, expected] = filter.split('=') as [string, string];
      value = Array.isArray(value) ? value.find((element) => String(at(element, filterPath)) === expected) : undefined;
    } else value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[field!] : undefined;
    if (value === undefined) return undefined;
  }
  return value;
}

/** What the reader has at hand after the blocks so far: the answers by operation name, the tokens by email. */
interface Session {
  url: string;
  answers: Map<string, Record<string, unknown>>;
  tokens: Map<string, string>;
}

/** Runs every example in order; throws, naming the README line, at the first that does not do what the README says. */
export async function runReadmeExamples(url: string, examples: ReadmeExample[]): Promise<void> {
  const session: Session = { url, answers: new Map(), tokens: new Map() };
  for (const example of examples) {
    const where = `README line ${example.line} (${example.operation.name?.value ?? 'anonymous'})`;
    const token = example.as === undefined ? undefined : session.tokens.get(example.as);
    if (example.as !== undefined && token === undefined) throw new Error(`${where}: no block before it signs in ${example.as}`);
    const variables = variablesOf(example, session, where);
    const response = example.operation.operation === 'subscription' ? await subscribe(example, session, variables, token, where) : await request(example, session, variables, token, where);
    if (example.error !== undefined) {
      if (!errorCodes(response).includes(example.error)) throw new Error(`${where}: expected the error ${example.error}, got ${JSON.stringify(response)}`);
    } else if (response.errors?.length || !response.data) throw new Error(`${where}: ${JSON.stringify(response.errors ?? response)}`);
    if (response.data) {
      if (example.operation.name) session.answers.set(example.operation.name.value, response.data);
      rememberTokens(example.operation, response.data, session);
    }
  }
}

function variablesOf(example: ReadmeExample, session: Session, where: string): Record<string, unknown> {
  const variables: Record<string, unknown> = {};
  for (const definition of example.operation.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    const source = example.variables[name];
    if (!source) throw new Error(`${where}: $${name} has no "$${name} = <Operation> <path>" clause`);
    const value = at(session.answers.get(source.operation), source.path);
    if (value === undefined) throw new Error(`${where}: $${name}: ${source.operation} answered nothing at ${source.path}`);
    variables[name] = value;
  }
  const unused = Object.keys(example.variables).filter((name) => !(example.operation.variableDefinitions ?? []).some((definition) => definition.variable.name.value === name));
  if (unused.length) throw new Error(`${where}: the operation declares no ${unused.map((name) => `$${name}`).join(', ')}`);
  return variables;
}

/** A query or mutation; with `until`, run again (as the reader presses Run again) until it holds. */
async function request(example: ReadmeExample, session: Session, variables: Record<string, unknown>, token: string | undefined, where: string): Promise<GraphQLResponse> {
  const deadline = Date.now() + untilTimeoutMs;
  for (;;) {
    const response = await graphql(session.url, { query: example.text, variables, token });
    if (!example.until || response.errors?.length || String(at(response.data, example.until.path)) === example.until.value) return response;
    if (Date.now() > deadline) throw new Error(`${where}: ${example.until.path} is still ${JSON.stringify(at(response.data, example.until.path))}, not ${example.until.value}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * A subscription over graphql-ws, as the README's Sandbox steps set it up (the token in the
 * connection params): the first event, or with `until` the first event for which it holds.
 */
async function subscribe(example: ReadmeExample, session: Session, variables: Record<string, unknown>, token: string | undefined, where: string): Promise<GraphQLResponse> {
  const client = createClient({
    url: session.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    ...(token ? { connectionParams: { Authorization: `Bearer ${token}` } } : {}),
  });
  let last: GraphQLResponse | undefined;
  try {
    return await new Promise<GraphQLResponse>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${where}: no event${example.until ? ` with ${example.until.path} = ${example.until.value}` : ''} within ${untilTimeoutMs / 1000} s; last ${JSON.stringify(last)}`)), untilTimeoutMs);
      const settle = (response: GraphQLResponse) => {
        clearTimeout(timer);
        resolve(response);
      };
      client.subscribe<Record<string, unknown>>(
        { query: example.text, variables },
        {
          next: (result) => {
            last = { status: 200, data: result.data ?? null, ...(result.errors ? { errors: result.errors as GraphQLResponse['errors'] } : {}) };
            if (result.errors?.length || !example.until || String(at(result.data, example.until.path)) === example.until.value) settle(last);
          },
          error: (error) => settle({ status: 200, errors: Array.isArray(error) ? error : [{ message: String((error as { reason?: string }).reason ?? error), extensions: { code: `CLOSE_${(error as { code?: number }).code}` } }] }),
          complete: () => settle(last ?? { status: 200, errors: [{ message: 'completed without an event' }] }),
        },
      );
    });
  } finally {
    await client.dispose();
  }
}

/** A signIn with a literal email and `accessToken` selected gives that account's token to later `as` blocks. */
function rememberTokens(operation: OperationDefinitionNode, data: Record<string, unknown>, session: Session): void {
  for (const selection of operation.selectionSet.selections) {
    if (selection.kind !== Kind.FIELD || selection.name.value !== 'signIn') continue;
    const email = (selection as FieldNode).arguments?.find((argument) => argument.name.value === 'email')?.value;
    const token = at(data, `${selection.alias?.value ?? 'signIn'}.accessToken`);
    if (email?.kind === Kind.STRING && typeof token === 'string') session.tokens.set(email.value, token);
  }
}
