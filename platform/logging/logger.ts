/**
 * One-line JSON logs on stderr. Deliberately tiny: levels, a component name and structured
 * fields. Errors are logged with their name, message and code. Stack traces never go to the logs
 * (they name files and internals, and logs travel far) unless `LOG_STACKS=true` asks for them
 * while debugging, and never in production.
 */
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

export function createLogger(component: string): Logger {
  const write = (level: Level, message: string, fields?: Record<string, unknown>) => {
    if (order[level] < threshold()) return;
    const line = { time: new Date().toISOString(), level, component, message, ...fields };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (name) => createLogger(`${component}.${name}`),
  };
}
