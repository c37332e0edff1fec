/**
 * WebSocket errors as one log line, without a stack trace. A client that sends an invalid frame
 * (bad UTF-8, a reserved bit, an unmasked frame) or a message over `maxPayload` makes `ws` emit
 * 'error' on the socket; graphql-ws's `useServer` listens for it and hands the Error to
 * `console.error`, which prints its whole stack (`at Receiver.dataMessage (…/ws/lib/receiver.js…)`)
 * on stderr, in production too, one multi-line trace per bad frame that anyone may send.
 *
 * These errors are the client's doing, and `ws` has already answered them (close 1002, 1007 or
 * 1009) and closes the socket itself: a `warn` line with the code is all an operator needs.
 */
import type { WebSocket, WebSocketServer } from 'ws';
import { errorFields, type Logger } from './logger.ts';

/** `ws`'s error codes for what a client sent (ws/lib/receiver.js). */
const clientFault = /^WS_ERR_/;

function logSocketError(log: Logger, error: unknown): void {
  const fields = errorFields(error);
  if (clientFault.test(String((error as { code?: unknown } | null)?.code ?? ''))) log.warn('invalid WebSocket message from a client', fields);
  else log.error('WebSocket error', fields);
}

/**
 * Replaces every 'error' listener of the server and of each socket it accepts with one that logs
 * through `log`. Call it right after graphql-ws's `useServer(…, wss)`: it takes over the listeners
 * `useServer` added (the server's at once; each socket's after `useServer` has set it up, since
 * 'connection' listeners run in the order they were added). A socket keeps one 'error' listener,
 * so `ws` never throws an unhandled 'error' event.
 */
export function logWebSocketErrors(wss: WebSocketServer, log: Logger): void {
  wss.removeAllListeners('error');
  wss.on('error', (error) => logSocketError(log, error));
  wss.on('connection', (socket: WebSocket) => {
    socket.removeAllListeners('error');
    // graphql-ws's listener also closed the socket with 4500; `ws` closes it after a frame error
    // on its own, and any other error ends the socket here the same way.
    socket.on('error', (error) => {
      logSocketError(log, error);
      if (socket.readyState === socket.OPEN) socket.close(4500, 'Internal server error');
    });
  });
}
