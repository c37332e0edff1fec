/**
 * One line per entry on stderr, built on pino: levels, a component name and structured fields.
 * Errors are logged with their name, message and code. Stack traces never go to the logs (they
 * name files and internals, and logs travel far) unless `LOG_STACKS=true` asks for them while
 * debugging, and never in production.
 *
 * What pino adds (docs/decisions/0035):
 * - every line written while handling a request carries its `requestId` (and `traceId`), in the
 *   gateway and in every subgraph the request reached (request-scope.ts);
 * - secrets are replaced by `[redacted]` by field name, wherever a logged object holds them
 *   (redaction.ts);
 * - `LOG_FORMAT`: JSON lines for machines, or one coloured line per entry for a person at a
 *   terminal — by default pretty when stderr is a terminal, and `npm start` asks its services for
 *   pretty lines when it runs in one.
 *
 * The line keeps the shape tests, the supervisor and operators read: `time` (ISO), `level` by name,
 * `component`, `message`, then the fields. Written synchronously through `process.stderr.write`, as
 * before: a crash loses no line, and a test that watches stderr sees each one.
 */
import pino from 'pino';
import { prettyFactory } from 'pino-pretty';
import { redactedPaths, redactionCensor } from './redaction.ts';
import { logScopeFields } from './request-scope.ts';

type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

function threshold(): number {
  const configured = (process.env.LOG_LEVEL ?? 'info') as Level;
  return order[configured] ?? order.info;
}

/**
 * An error message as one line. Prisma's messages quote the calling source file, its path and a
 * code frame before the cause (`Invalid \`db.product.findMany()\` invocation in /app/…:71:49 …
 * The table \`public.products\` does not exist`): only the cause is kept, the rest is a stack
 * trace by another name.
 */
export function oneLineMessage(message: string): string {
  const lines = message.split('\n').map((line) => line.trim()).filter(Boolean);
  if (/^Invalid `[^`]*` invocation/.test(lines[0] ?? '')) return lines.at(-1) ?? '';
  return lines.join(' ');
}

/** Turns an error into fields safe for a log line (no secrets: we never put any in errors). */
export function errorFields(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    // A subgraph's error as the gateway receives it: a plain `{ message, extensions }`.
    const reported = error as { message?: unknown; extensions?: { code?: unknown; serviceName?: unknown } } | null;
    if (typeof reported?.message !== 'string') return { error: String(error) };
    const { code, serviceName } = reported.extensions ?? {};
    return { error: oneLineMessage(reported.message), ...(code !== undefined ? { errorCode: code } : {}), ...(serviceName !== undefined ? { subgraph: serviceName } : {}) };
  }
  const fields: Record<string, unknown> = { error: oneLineMessage(error.message), errorName: error.name };
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) fields.errorCode = code;
  if (process.env.LOG_STACKS === 'true' && process.env.NODE_ENV !== 'production' && error.stack) fields.stack = error.stack;
  return fields;
}

/** `LOG_FORMAT`, else pretty for a person at a terminal and JSON for everything else (pipes, files, collectors). */
function format(): 'json' | 'pretty' {
  const configured = process.env.LOG_FORMAT;
  if (configured === 'json' || configured === 'pretty') return configured;
  return process.stderr.isTTY ? 'pretty' : 'json';
}

let prettify: ((line: string) => string) | undefined;

/** One line per entry for a person: time, level, component and message, then the fields as JSON. */
function pretty(line: string): string {
  prettify ??= prettyFactory({
    // A terminal that cannot show colours (NO_COLOR, TERM=dumb) gets none; `npm start` relays its
    // services' lines to its own terminal through a pipe, and asked for pretty lines because it has one.
    colorize: process.stderr.isTTY && typeof process.stderr.hasColors === 'function' ? process.stderr.hasColors() : true,
    messageKey: 'message',
    translateTime: 'SYS:HH:MM:ss.l',
    singleLine: true,
    ignore: 'component',
    // Our `error` field is a one-line message, not an Error to print over several lines.
    errorLikeObjectKeys: [],
    // One line even for a message with line breaks: the supervisor prefixes each line with its service.
    messageFormat: (entry, messageKey) => {
      const message = String(entry[messageKey] ?? '').replace(/\s*\n\s*/g, ' ');
      return typeof entry.component === 'string' ? `${entry.component}: ${message}` : message;
    },
  });
  return prettify(line);
}

let root: pino.Logger | undefined;

/**
 * The process's one pino logger. Its own level lets everything through: the threshold is read from
 * `LOG_LEVEL` at each call, as it always was, so a component's logger made at import time follows
 * the level the process runs with.
 */
function rootLogger(): pino.Logger {
  root ??= pino(
    {
      level: 'debug',
      base: undefined,
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: logScopeFields,
      redact: { paths: redactedPaths, censor: redactionCensor },
    },
    { write: (line: string) => process.stderr.write(format() === 'pretty' ? pretty(line) : line) },
  );
  return root;
}

export function createLogger(component: string): Logger {
  const write = (level: Level, message: string, fields?: Record<string, unknown>) => {
    if (order[level] < threshold()) return;
    // The component first, so that a field of the same name wins, as it always did.
    rootLogger()[level]({ component, ...fields }, message);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (name) => createLogger(`${component}.${name}`),
  };
}
