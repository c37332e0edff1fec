/**
 * The compose topology, checked without a Docker engine: `docker-compose config` (Debian's
 * python docker-compose v1) validates the file against the compose spec, and the structural
 * tests read it with `yaml` and walk platform/contexts.ts, so a context added there fails here
 * until it has its service, its health check and its place in the gateway's dependencies.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { contexts } from '../platform/contexts.ts';
import { ensureKeys } from '../scripts/keys.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const composeFile = join(root, 'docker-compose.yml');

interface Service {
  image?: string;
  build?: string | { context?: string };
  command?: string | string[];
  environment?: Record<string, string | number | null> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[] };
  ports?: (string | { target?: number; published?: number | string })[];
  volumes?: (string | { source?: string; target?: string; read_only?: boolean })[];
}

interface ComposeFile {
  version?: unknown;
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

// Merge keys (`<<: *anchor`) are YAML 1.1, which compose uses and `yaml` only honours when asked.
const compose = parse(readFileSync(composeFile, 'utf8'), { merge: true }) as ComposeFile;

function service(name: string): Service {
  const found = compose.services[name];
  if (!found) throw new Error(`docker-compose.yml has no service "${name}"`);
  return found;
}

function environmentOf(s: Service): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry) => [entry.split('=')[0]!, entry.split('=').slice(1).join('=')]));
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

function dependencyConditions(s: Service): Record<string, string> {
  const deps = s.depends_on ?? {};
  // The short list form means "started", which says nothing about readiness.
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, 'service_started']));
  return Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, v.condition ?? 'service_started']));
}

function words(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(' ') : (value ?? '');
}

interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

function mountsOf(s: Service): Mount[] {
  return (s.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source ?? '', target: v.target ?? '', readOnly: !!v.read_only };
    const [source = '', target = '', mode = ''] = v.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
}

function buildsFromRepository(s: Service): boolean {
  const context = typeof s.build === 'string' ? s.build : s.build?.context;
  return context === '.' || context === './';
}

describe('docker-compose.yml', () => {
  it('docker-compose.yml is a valid compose file', { timeout: 60_000 }, () => {
    const result = spawnSync('docker-compose', ['-f', composeFile, 'config', '-q'], { cwd: root, encoding: 'utf8' });
    if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new Error(
        'docker-compose is not installed, so docker-compose.yml cannot be validated. Install it with ' +
          '`apt-get install -y docker-compose` (Debian\'s python v1 needs no Docker engine); .ci/run does this in CI.',
      );
    }
    if (result.error) throw result.error;
    expect(result.stderr, 'docker-compose config rejected the file').toBe('');
    expect(result.status).toBe(0);
    // The compose spec deprecated `version:`; Compose v2 warns about it on every command.
    expect(compose).not.toHaveProperty('version');
  });

  it('every bounded context runs as its own service whose health check is its readiness (database and bus)', () => {
    for (const { name, port } of contexts) {
      const s = service(name);
      expect(buildsFromRepository(s), `${name} is built from the repository`).toBe(true);
      expect(words(s.command), `${name} runs its own entrypoint`).toContain(`subgraphs/${name}/main.ts`);

      const env = environmentOf(s);
      expect(env.PORT, `${name} listens on its port`).toBe(String(port));
      expect(env.NODE_ENV).toBe('production');
      expect(env.DATABASE_URL, `${name} gets a database server`).toMatch(/^postgres(ql)?:\/\/.+@postgres:5432\//);
      expect(env.GATEWAY_IDENTITY_PUBLIC_KEY_FILE, `${name} verifies the gateway`).toBeTruthy();
      expect(env.NATS_URL).toMatch(/^nats:\/\/nats:4222$/);

      expect(words(s.healthcheck?.test), `${name} health check`).toMatch(
        new RegExp(`https?://(localhost|127\\.0\\.0\\.1):${port}/ready\\b`),
      );
      expect(dependencyConditions(s), `${name} waits for its database and its keys`).toMatchObject({
        postgres: 'service_healthy',
        keys: 'service_completed_successfully',
      });
    }
    const ports = contexts.map(({ name }) => environmentOf(service(name)).PORT);
    expect(new Set(ports).size, 'subgraph ports are distinct').toBe(ports.length);
  });

  it('the gateway starts only after every subgraph is healthy', () => {
    const gateway = service('gateway');
    const conditions = dependencyConditions(gateway);
    const env = environmentOf(gateway);
    for (const { name, port } of contexts) {
      expect(conditions[name], `gateway waits for ${name}`).toBe('service_healthy');
      expect(env[`SUBGRAPH_URL_${name.toUpperCase()}`], `gateway routes ${name} to its service`).toBe(
        `http://${name}:${port}/graphql`,
      );
    }
    expect(words(gateway.command)).toContain('gateway/main.ts');
    expect(words(gateway.healthcheck?.test), 'the gateway is healthy when it is ready to serve').toMatch(/:4000\/ready\b/);
    expect(gateway.ports?.map(String)).toContain('4000:4000');
  });

  it('PostgreSQL and NATS with JetStream are part of the topology', () => {
    const postgres = service('postgres');
    expect(postgres.image).toMatch(/^postgres:17(\.|-|$)/);
    expect(words(postgres.healthcheck?.test)).toContain('pg_isready');
    const pgData = mountsOf(postgres).find((m) => m.target.startsWith('/var/lib/postgresql'));
    expect(pgData?.source, 'PostgreSQL data survives the container').toBeDefined();
    expect(compose.volumes ?? {}, 'PostgreSQL data lives in a named volume').toHaveProperty(pgData!.source);

    const nats = service('nats');
    expect(nats.image).toMatch(/^nats:2\.10/);
    const args = words(nats.command).split(/\s+/);
    expect(args, 'JetStream is enabled').toEqual(expect.arrayContaining([expect.stringMatching(/^(-js|--jetstream)$/)]));
    const storeDir = args[args.findIndex((a) => a === '-sd' || a === '--store_dir') + 1];
    expect(storeDir, 'JetStream has a store directory').toBeTruthy();
    const store = mountsOf(nats).find((m) => m.target === storeDir);
    expect(compose.volumes ?? {}, 'JetStream streams live in a named volume').toHaveProperty(store?.source ?? '(none)');
    expect(words(nats.healthcheck?.test)).toMatch(/:8222\/healthz/);
  });

  it('services find their keys where the keys job writes them, and only accounts and the gateway hold private keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    try {
      const written = ensureKeys(dir);
      const keys = service('keys');
      expect(words(keys.command)).toContain('scripts/keys.ts');
      const outDir = words(keys.command).match(/--out[= ](\S+)/)?.[1];
      const jobMount = mountsOf(keys).find((m) => m.target === outDir);
      expect(jobMount, 'the keys job writes into a volume').toBeDefined();
      expect(compose.volumes ?? {}).toHaveProperty(jobMount!.source);

      const fileNames = new Set(
        Object.values(written).flatMap((pair) => [basename(pair.privateKeyFile), basename(pair.publicKeyFile)]),
      );
      for (const [name, s] of Object.entries(compose.services)) {
        if (name === 'keys') continue;
        for (const [variable, path] of Object.entries(environmentOf(s))) {
          if (!variable.endsWith('_KEY_FILE')) continue;
          const mount = mountsOf(s).find((m) => m.source === jobMount!.source);
          expect(mount, `${name} mounts the keys volume`).toBeDefined();
          expect(mount!.readOnly, `${name} mounts the keys read-only`).toBe(true);
          expect(posix.dirname(path), `${name} ${variable}`).toBe(mount!.target);
          expect(fileNames, `${name} ${variable} names a file scripts/keys.ts writes`).toContain(posix.basename(path));
          if (variable.includes('PRIVATE')) expect(['accounts', 'gateway'], `${name} holds ${variable}`).toContain(name);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
