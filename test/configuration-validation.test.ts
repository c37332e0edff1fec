/**
 * The environment is checked against platform/config/schema.ts before a process starts anything:
 * a bad value stops it with a message naming the variable (or flag), its value (never a key's or
 * a password's) and what is expected. Unit tests call the check with an env object; two process
 * tests show that `npm start`'s script and the gateway stop at once.
 */
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { logLevels, variables, type Scope } from '../platform/config/schema.ts';
import { ConfigurationError, checkConfiguration, configurationProblems } from '../platform/config/validation.ts';
import { contextNames } from '../platform/contexts.ts';
import { createLogger } from '../platform/logging/logger.ts';
import { startProcess } from './support/processes.ts';

const everyService: Scope[] = ['start', 'gateway', 'subgraphs'];
const problems = (env: Record<string, string>, scopes: Scope[] = everyService) => configurationProblems(env, scopes);

describe('NODE_ENV', () => {
  it('refuses a value other than development, production or test, naming what is expected', () => {
    expect(problems({ NODE_ENV: 'prod' })).toEqual(['NODE_ENV="prod" is invalid: expected one of development, production, test']);
  });

  it('accepts each of the three, and unset or empty (development)', () => {
    for (const value of ['development', 'production', 'test', '']) expect(problems({ NODE_ENV: value }), value).toEqual([]);
    expect(problems({})).toEqual([]);
  });
});

describe('LOG_LEVEL', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('refuses a level the logger does not know, listing the ones it does', () => {
    expect(problems({ LOG_LEVEL: 'verbose' })).toEqual(['LOG_LEVEL="verbose" is invalid: expected one of debug, info, warn, error']);
  });

  it('accepts exactly the levels the logger honours: each lets its own lines through and stops the level below', () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    const log = createLogger('configuration-test');
    for (const [index, level] of logLevels.entries()) {
      expect(problems({ LOG_LEVEL: level }), level).toEqual([]);
      vi.stubEnv('LOG_LEVEL', level);
      written.length = 0;
      log[level](`at ${level}`);
      if (index > 0) log[logLevels[index - 1]!](`below ${level}`);
      expect(written.map((line) => JSON.parse(line).message), level).toEqual([`at ${level}`]);
    }
  });
});

describe('ports', () => {
  it('refuses a port that is not an integer from 0 to 65535, for every port variable', () => {
    expect(problems({ ORDERS_PORT: 'abc' })).toEqual(['ORDERS_PORT="abc" is invalid: expected a port, an integer from 0 to 65535']);
    for (const value of ['70000', '-1', '4000.5', 'abc']) {
      for (const name of ['GATEWAY_PORT', 'PORT', 'EMBEDDED_POSTGRES_PORT', ...contextNames.map((context) => `${context.toUpperCase()}_PORT`)]) {
        expect(problems({ [name]: value }), `${name}=${value}`).toEqual([`${name}="${value}" is invalid: expected a port, an integer from 0 to 65535`]);
      }
    }
  });

  it('accepts 0 (any free port) up to 65535', () => {
    expect(problems({ GATEWAY_PORT: '0', ACCOUNTS_PORT: '65535', PORT: '4001' })).toEqual([]);
  });
});

describe('URLs', () => {
  it('refuses a database URL that does not parse, naming the variable', () => {
    expect(problems({ DATABASE_URL: 'garbage' })).toEqual(['DATABASE_URL="garbage" is invalid: expected a URL (postgres://…)']);
    expect(problems({ PAYMENTS_DATABASE_URL: 'http://db/payments' })).toEqual(['PAYMENTS_DATABASE_URL="http://db/payments" is invalid: expected a URL (postgres://…)']);
  });

  it('masks the password of a refused URL', () => {
    const [problem] = problems({ REDIS_URL: 'http://cache:s3cret@redis.internal:6379' });

    expect(problem).toBe('REDIS_URL="http://cache:***@redis.internal:6379" is invalid: expected a URL (redis://…)');
    expect(problem).not.toContain('s3cret');
  });

  it('checks every URL of a comma-separated list', () => {
    expect(problems({ NATS_URL: 'nats://a:4222,nats://b:4222' })).toEqual([]);
    expect(problems({ NATS_URL: 'nats://a:4222,b:4222' })).toEqual(['NATS_URL="nats://a:4222,b:4222" is invalid: expected comma-separated URLs (nats://…, …)']);
    expect(problems({ GATEWAY_CORS_ORIGINS: 'https://shop.example.com, shop.example.org' }, ['gateway'])).toEqual([
      'GATEWAY_CORS_ORIGINS="https://shop.example.com, shop.example.org" is invalid: expected comma-separated URLs (http://…, …)',
    ]);
  });

  it('accepts postgres and postgresql URLs, redis and rediss, http and https', () => {
    expect(
      problems({
        DATABASE_URL: 'postgres://u:p@h:5432/commerce?sslmode=require',
        EVENT_BUS_DATABASE_URL: 'postgresql://h/events',
        REDIS_URL: 'rediss://h:6380',
        AUTH_JWKS_URL: 'https://accounts.internal/.well-known/jwks.json',
      }),
    ).toEqual([]);
  });
});

describe('integers', () => {
  it('refuses a duration, size or count that is not an integer, or below its least value', () => {
    expect(problems({ GATEWAY_REQUEST_TIMEOUT_MS: '10s' }, ['gateway'])).toEqual(['GATEWAY_REQUEST_TIMEOUT_MS="10s" is invalid: expected an integer, at least 1']);
    expect(problems({ SAGA_STEP_TIMEOUT_MS: '0' }, ['subgraphs'])).toEqual(['SAGA_STEP_TIMEOUT_MS="0" is invalid: expected an integer, at least 1']);
    expect(problems({ OUTBOX_RETENTION_HOURS: '0.5' }, ['subgraphs'])).toEqual(['OUTBOX_RETENTION_HOURS="0.5" is invalid: expected an integer, at least 1']);
    expect(problems({ ORDER_RETURN_WINDOW_DAYS: '-1' }, ['subgraphs'])).toEqual(['ORDER_RETURN_WINDOW_DAYS="-1" is invalid: expected an integer, at least 0']);
    expect(problems({ DATABASE_POOL_SIZE: 'ten' }, ['subgraphs'])).toEqual(['DATABASE_POOL_SIZE="ten" is invalid: expected an integer, at least 1']);
  });

  it('accepts what the readers accept: 0 where it turns a feature off, and integers as Number reads them', () => {
    expect(problems({ DATABASE_STATEMENT_TIMEOUT_MS: '0', GATEWAY_COST_BUDGET: '0', SUBGRAPH_RETRIES: '0', GATEWAY_MAX_DEPTH: ' 20 ' })).toEqual([]);
  });
});

describe('switches and choices', () => {
  it('refuses a boolean other than true or false, rather than reading it as one of them', () => {
    expect(problems({ MIGRATE_ON_START: 'no' }, ['subgraphs'])).toEqual(['MIGRATE_ON_START="no" is invalid: expected one of true, false']);
    expect(problems({ GATEWAY_DEDUPLICATE_REQUESTS: '0' }, ['gateway'])).toEqual(['GATEWAY_DEDUPLICATE_REQUESTS="0" is invalid: expected one of true, false']);
  });

  it('refuses a choice outside its list', () => {
    expect(problems({ GATEWAY_SESSION_COOKIE_SECURE: 'yes' }, ['gateway'])).toEqual(['GATEWAY_SESSION_COOKIE_SECURE="yes" is invalid: expected one of auto, true, false']);
    expect(problems({ GATEWAY_UNKNOWN_CLIENTS: 'deny' }, ['gateway'])).toEqual(['GATEWAY_UNKNOWN_CLIENTS="deny" is invalid: expected one of refuse, allow']);
  });

  it('refuses JSON that does not parse, and accepts `off` for the rate limits', () => {
    expect(problems({ GATEWAY_CLIENTS: '{web:{}}' }, ['gateway'])).toEqual(['GATEWAY_CLIENTS="{web:{}}" is invalid: expected JSON']);
    expect(problems({ GATEWAY_RATE_LIMITS: 'none' }, ['gateway'])).toEqual(['GATEWAY_RATE_LIMITS="none" is invalid: expected JSON, or off']);
    expect(problems({ GATEWAY_RATE_LIMITS: 'off' }, ['gateway'])).toEqual([]);
  });

  it('refuses a NATS subject prefix with wildcards', () => {
    expect(problems({ NATS_SUBJECT_PREFIX: 'events.>' }, ['subgraphs'])).toEqual([
      'NATS_SUBJECT_PREFIX="events.>" is invalid: expected dot-separated tokens of letters, digits, _ or - (no wildcards)',
    ]);
  });
});

describe('keys and passwords', () => {
  it('never prints their value, refused or not', () => {
    const refused = problems({ AUTH_TOKEN_PRIVATE_KEY: '   ', DATABASE_PASSWORD: ' \t ', DEMO_ADMIN_PASSWORD: '  ' });

    expect(refused).toEqual([
      'AUTH_TOKEN_PRIVATE_KEY=(hidden) is invalid: expected some text',
      'DATABASE_PASSWORD=(hidden) is invalid: expected some text',
      'DEMO_ADMIN_PASSWORD=(hidden) is invalid: expected some text',
    ]);
  });

  it('checks their `_FILE` form as a path', () => {
    expect(problems({ GATEWAY_IDENTITY_PUBLIC_KEY_FILE: ' ' }, ['subgraphs'])).toEqual(['GATEWAY_IDENTITY_PUBLIC_KEY_FILE=" " is invalid: expected some text']);
    expect(problems({ GATEWAY_IDENTITY_PUBLIC_KEY_FILE: '/run/secrets/identity.pub' }, ['subgraphs'])).toEqual([]);
  });
});

describe('names of subgraphs', () => {
  const known = contextNames.join(', ');

  it('refuses a SUBGRAPH_URL_<NAME> whose name is no subgraph, rather than ignoring it', () => {
    expect(problems({ SUBGRAPH_URL_ACOUNTS: 'http://accounts:4001/graphql' }, ['gateway'])).toEqual([
      `SUBGRAPH_URL_ACOUNTS names no subgraph "acounts": expected one of ${known}`,
    ]);
    expect(problems({ SUBGRAPH_URL_ACCOUNTS: 'http://accounts:4001/graphql' }, ['gateway'])).toEqual([]);
  });

  it('refuses a per-subgraph resilience setting of no subgraph, and checks the value of a known one', () => {
    expect(problems({ SUBGRAPH_TIMEOUT_MS_PAYMENT: '8000' }, ['gateway'])).toEqual([`SUBGRAPH_TIMEOUT_MS_PAYMENT names no subgraph "payment": expected one of ${known}`]);
    expect(problems({ SUBGRAPH_TIMEOUT_MS_PAYMENTS: '8s' }, ['gateway'])).toEqual(['SUBGRAPH_TIMEOUT_MS_PAYMENTS="8s" is invalid: expected an integer, at least 1']);
    expect(problems({ SUBGRAPH_MAX_QUEUE_ORDERS: '0' }, ['gateway'])).toEqual([]);
  });

  it('names the flag a value came from', () => {
    const env = { GATEWAY_PORT: 'abc', SUBGRAPH_URL_ACOUNTS: 'http://127.0.0.1:4001/graphql' };
    const givenAs = { GATEWAY_PORT: '--port', SUBGRAPH_URL_ACOUNTS: '--subgraph-url acounts' };

    expect(configurationProblems(env, ['gateway'], { givenAs })).toEqual([
      '--port "abc" is invalid: expected a port, an integer from 0 to 65535',
      `--subgraph-url acounts names no subgraph "acounts": expected one of ${known}`,
    ]);
  });
});

describe('checking a process’s configuration', () => {
  it('checks only the variables of its own scopes: the gateway does not refuse a subgraph’s port', () => {
    expect(problems({ ORDERS_PORT: 'abc' }, ['gateway'])).toEqual([]);
    expect(problems({ ORDERS_PORT: 'abc' }, ['subgraphs'])).toHaveLength(1);
  });

  it('leaves variables it does not know alone', () => {
    expect(problems({ PATH: '/usr/bin', HOME: '/root', SOMETHING_ELSE: 'x' })).toEqual([]);
  });

  it('throws one ConfigurationError listing every problem, one a line', () => {
    const check = () => checkConfiguration({ NODE_ENV: 'prod', LOG_LEVEL: 'verbose' }, everyService);

    expect(check).toThrow(ConfigurationError);
    expect(check).toThrow('Invalid configuration:\n  - NODE_ENV="prod" is invalid: expected one of development, production, test\n  - LOG_LEVEL="verbose"');
  });

  it('accepts the environment the tests themselves run in', () => {
    expect(configurationProblems(process.env, [...everyService, 'tests', 'tools'])).toEqual([]);
  });

  it('refuses some bad value of every variable of the schema, naming it', () => {
    const candidates = ['  ', 'abc', '-1', '{', 'not a url'];
    const unchecked = Object.entries(variables)
      .filter(([name, variable]) => !candidates.some((value) => configurationProblems({ [name]: value }, variable.scopes).some((problem) => problem.startsWith(`${name}=`))))
      .map(([name]) => name);

    expect(unchecked).toEqual([]);
  });
});

describe('a process with a bad value', () => {
  it('makes `node --import tsx scripts/start.ts` with ORDERS_PORT=abc exit 1 at once, naming it, before any service or PostgreSQL starts', { timeout: 60_000 }, async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'config-start-')), 'data');
    const env: NodeJS.ProcessEnv = { ...process.env, ORDERS_PORT: 'abc', DATA_DIR: dataDir };
    delete env.DATABASE_URL;
    try {
      const started = startProcess('node', ['--import', 'tsx', 'scripts/start.ts'], env);

      expect(await started.exited).toBe(1);
      expect(started.output()).toContain('ORDERS_PORT="abc" is invalid: expected a port, an integer from 0 to 65535');
      expect(started.output()).not.toMatch(/PostgreSQL on|database|accounts|gateway/i);
      expect(existsSync(dataDir), 'nothing written to DATA_DIR').toBe(false);
    } finally {
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
    }
  });

  it('makes the gateway with `--port abc` and a misspelled `--subgraph-url` exit 1, naming both flags', { timeout: 60_000 }, async () => {
    const started = startProcess('node', ['--import', 'tsx', 'gateway/main.ts', '--port', 'abc', '--subgraph-url', 'acounts=http://127.0.0.1:4001/graphql'], { ...process.env });

    expect(await started.exited).toBe(1);
    expect(started.output()).toContain('--port \\"abc\\" is invalid: expected a port, an integer from 0 to 65535');
    expect(started.output()).toContain('--subgraph-url acounts names no subgraph \\"acounts\\"');
    expect(started.output()).not.toContain('RangeError');
  });
});
