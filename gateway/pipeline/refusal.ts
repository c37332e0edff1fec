/**
 * How the gateway says no: one error type for every plugin and every transport. HTTP answers with
 * `status` (and `Retry-After` when given); a WebSocket refused at connection is closed with
 * `closeCode`; an operation refused on a WebSocket gets the error as its `error` message.
 */
import type { ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { sendJson } from '../../platform/http/graphql-http.ts';

export interface RefusalOptions {
  /** HTTP status of the response. @default 400 */
  status?: number;
  /** WebSocket close code when a connection is refused. @default 4400, or 4429 for status 429, 4403 for 401/403 */
  closeCode?: number;
  /** Seconds after which trying again may succeed (`Retry-After`, `extensions.retryAfter`). */
  retryAfterSeconds?: number;
  /** More for the client to read, e.g. `{ limit: 10, actual: 14 }`. */
  details?: Record<string, unknown>;
}

export class GatewayRefusal extends GraphQLError {
  readonly status: number;
  readonly closeCode: number;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, message: string, options: RefusalOptions = {}) {
    const status = options.status ?? 400;
    super(message, {
      extensions: {
        code,
        ...options.details,
        ...(options.retryAfterSeconds !== undefined ? { retryAfter: options.retryAfterSeconds } : {}),
        http: { status, ...(options.retryAfterSeconds !== undefined ? { headers: new Map([['retry-after', String(options.retryAfterSeconds)]]) } : {}) },
      },
    });
    this.name = 'GatewayRefusal';
    this.status = status;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.closeCode = options.closeCode ?? (status === 429 ? 4429 : status === 401 || status === 403 ? 4403 : 4400);
  }

  /** The error as a client reads it (no `http` extension). */
  toClient(): { message: string; extensions: Record<string, unknown> } {
    const { http: _http, ...extensions } = this.extensions as Record<string, unknown>;
    return { message: this.message, extensions };
  }
}

export function isRefusal(error: unknown): error is GatewayRefusal {
  return error instanceof GatewayRefusal;
}

/** Answers an HTTP request with the refusal: its status, `Retry-After` when it has one, and the error as a client reads it. */
export function sendRefusal(response: ServerResponse, refusal: GatewayRefusal): void {
  if (refusal.retryAfterSeconds !== undefined) response.setHeader('retry-after', String(refusal.retryAfterSeconds));
  sendJson(response, refusal.status, { errors: [refusal.toClient()] });
}
