/**
 * The request's deadline travels with it: the gateway sends `x-request-deadline` (epoch
 * milliseconds) with each fetch, and gives up at that time. Past it, or once the gateway closed
 * the connection, nobody will read the answer, so the subgraph stops: a request that arrives late
 * is refused before it runs, and a running one stops resolving fields (each field not yet
 * started fails with DEADLINE_EXCEEDED, so a nested list stops generating SQL). A request without
 * the header, or with a later one, is bounded by `maxRequestMs` all the same.
 *
 * A statement already sent to PostgreSQL is not interrupted here: the statement timeout
 * (platform/database/prisma.ts) bounds it.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { deadlineExceeded, SubgraphRefusalCode } from './refusals.ts';

export const requestDeadlineHeader = 'x-request-deadline';

export interface RequestDeadlineOptions {
  /**
   * The longest a request may run, whatever its `x-request-deadline` says (or without one). Above
   * the gateway's subgraph timeout, so that the gateway's own deadline is the one that applies.
   * @default 15_000
   */
  maxRequestMs?: number;
}

interface Deadline {
  at: number;
  socket: Socket;
}

/**
 * Where a context keeps its deadline: a symbol property rather than a WeakMap, because Apollo
 * Server runs each operation with a shallow copy of the context (own properties, symbols
 * included, are copied; the object's identity is not).
 */
const deadlineKey = Symbol('request deadline');
type WithDeadline = { [deadlineKey]?: Deadline };

/**
 * Remembers the deadline of the request a context was built for: the header's, bounded by
 * `maxRequestMs` from now. Call it from the HTTP server's context function.
 */
export function trackRequestDeadline(context: object, request: IncomingMessage, options: RequestDeadlineOptions = {}): void {
  const bound = Date.now() + (options.maxRequestMs ?? 15_000);
  const header = request.headers[requestDeadlineHeader];
  const asked = Number(Array.isArray(header) ? header[0] : header);
  const at = Number.isSafeInteger(asked) && asked > 0 ? Math.min(asked, bound) : bound;
  (context as WithDeadline)[deadlineKey] = { at, socket: request.socket };
}

/** The deadline (epoch ms) of the request behind a context, for work that waits (e.g. the write queue). */
export function deadlineOf(context: object): number | undefined {
  return (context as WithDeadline)[deadlineKey]?.at;
}

/** Whether the request behind a context is past its deadline, or its caller went away. */
export function isPastDeadline(context: object): boolean {
  const deadline = (context as WithDeadline)[deadlineKey];
  if (!deadline) return false;
  return Date.now() >= deadline.at || deadline.socket.destroyed;
}

/**
 * Refuses a request that arrives past its deadline (HTTP 504, DEADLINE_EXCEEDED) and stops field
 * resolution of a running one once its deadline passed or its connection closed. Its response
 * then carries one DEADLINE_EXCEEDED error, not one per field that was cut.
 */
export function requestDeadlinePlugin<TContext extends BaseContext>(): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart({ contextValue }) {
      return {
        async didResolveOperation() {
          // Before anything runs; thrown here, Apollo answers with this error and its status.
          if (isPastDeadline(contextValue)) throw deadlineExceeded();
        },
        async executionDidStart() {
          return {
            willResolveField() {
              if (isPastDeadline(contextValue)) throw deadlineExceeded();
            },
          };
        },
        async willSendResponse({ response }) {
          if (response.body.kind !== 'single') return;
          const errors = response.body.singleResult.errors;
          if (!errors || errors.length < 2) return;
          let kept = false;
          const fewer = errors.filter((error) => {
            if (error.extensions?.code !== SubgraphRefusalCode.DEADLINE_EXCEEDED) return true;
            if (kept) return false;
            kept = true;
            return true;
          });
          if (fewer.length !== errors.length) response.body.singleResult.errors = fewer;
        },
      };
    },
  };
}
