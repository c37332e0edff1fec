import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, errorFields } from '../platform/logging/logger.ts';

describe('logs', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  const failure = () => Object.assign(new Error('connection refused by 10.0.0.7'), { code: 'ECONNREFUSED' });

  it("name an error's class, message and code, and carry no stack trace", () => {
    vi.stubEnv('NODE_ENV', 'development');
    vi.stubEnv('LOG_STACKS', undefined);
    expect(errorFields(failure())).toEqual({ error: 'connection refused by 10.0.0.7', errorName: 'Error', errorCode: 'ECONNREFUSED' });
  });

  it("name a subgraph's error as the gateway received it by its message, code and subgraph", () => {
    expect(errorFields({ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR', serviceName: 'catalog' } })).toEqual({
      error: 'Internal server error',
      errorCode: 'INTERNAL_SERVER_ERROR',
      subgraph: 'catalog',
    });
    expect(errorFields(42)).toEqual({ error: '42' });
  });

  it('carry a stack trace only when LOG_STACKS=true asks for it, and never in production', () => {
    vi.stubEnv('LOG_STACKS', 'true');
    vi.stubEnv('NODE_ENV', 'development');
    expect(errorFields(failure()).stack).toMatch(/logging\.test\.ts/);
    vi.stubEnv('NODE_ENV', 'production');
    expect(errorFields(failure())).not.toHaveProperty('stack');
  });

  it('are one JSON line on stderr per entry, below the level threshold dropped', () => {
    vi.stubEnv('LOG_LEVEL', 'warn');
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    const log = createLogger('gateway').child('subscriptions');
    log.info('not shown');
    log.error('failed', errorFields(failure()));
    expect(written).toHaveLength(1);
    expect(written[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(written[0]!)).toMatchObject({ level: 'error', component: 'gateway.subscriptions', message: 'failed', errorCode: 'ECONNREFUSED' });
    expect(written[0]).not.toContain('    at ');
  });
});
