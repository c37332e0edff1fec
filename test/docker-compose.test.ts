/**
 * The compose topology, checked without a Docker engine: `docker-compose config` (Debian's
 * python docker-compose v1) validates the file against the compose spec, and the structural
 * tests read it with `yaml` and walk platform/contexts.ts, so a context added there fails here
 * until it has its service, its health check and its place in the gateway's dependencies.
 * The secrets tests run the `keys` job's own script on this machine, its mount targets mapped to
 * temporary directories, and check what each service can read against what it needs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { databaseUrlFor } from '../platform/config.ts';
import { contexts } from '../platform/contexts.ts';
import { keyPairNames } from '../scripts/keys.ts';

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

  it('Prometheus scrapes /metrics of the gateway and every context, and Grafana provisions it and the dashboard from the repository', () => {
    const prometheus = service('prometheus');
    const config = parse(readFileSync(fileURLToPath(new URL('../ops/prometheus/prometheus.yml', import.meta.url)), 'utf8')) as {
      scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = config.scrape_configs.flatMap((job) => job.static_configs.flatMap((group) => group.targets.map((target) => `${job.metrics_path ?? '/metrics'} ${target}`)));
    expect(targets.sort()).toEqual(['/metrics gateway:4000', ...contexts.map(({ name, port }) => `/metrics ${name}:${port}`)].sort());
    expect(mountsOf(prometheus).map((m) => `${m.source}:${m.target}`)).toContain('./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml');
    expect(words(prometheus.command)).toContain('--config.file=/etc/prometheus/prometheus.yml');
    // Prometheus is reached by Grafana over the compose network only.
    expect(prometheus.ports ?? []).toEqual([]);

    const grafana = service('grafana');
    const mounts = mountsOf(grafana).map((m) => `${m.source}:${m.target}`);
    expect(mounts).toEqual(expect.arrayContaining(['./ops/grafana/provisioning:/etc/grafana/provisioning', './ops/grafana/dashboards:/var/lib/grafana/dashboards']));
    const provider = parse(readFileSync(fileURLToPath(new URL('../ops/grafana/provisioning/dashboards/commerce.yml', import.meta.url)), 'utf8')) as { providers: { options: { path: string } }[] };
    expect(provider.providers.map((p) => p.options.path)).toEqual(['/var/lib/grafana/dashboards']);
    const datasource = parse(readFileSync(fileURLToPath(new URL('../ops/grafana/provisioning/datasources/prometheus.yml', import.meta.url)), 'utf8')) as { datasources: { uid: string; url: string }[] };
    expect(datasource.datasources).toEqual([expect.objectContaining({ uid: 'prometheus', url: 'http://prometheus:9090' })]);
    const dashboard = JSON.parse(readFileSync(fileURLToPath(new URL('../ops/grafana/dashboards/commerce.json', import.meta.url)), 'utf8')) as { panels: { datasource: { uid: string } }[] };
    expect(dashboard.panels.length).toBeGreaterThan(0);
    expect(new Set(dashboard.panels.map((panel) => panel.datasource.uid))).toEqual(new Set(['prometheus']));
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

  describe('secrets: each service holds only what it needs (docs/decisions/0033)', () => {
    const subgraphs = contexts.map(({ name }) => name).filter((name) => name !== 'accounts');
    /** Per service, the secret volumes it may mount; every service not listed gets none. */
    const secretsOf: Record<string, string[]> = {
      postgres: ['database-password'],
      accounts: ['auth-token-private', 'gateway-identity-public', 'database-password'],
      ...Object.fromEntries(subgraphs.map((name) => [name, ['gateway-identity-public', 'database-password']])),
      gateway: ['auth-token-public', 'gateway-identity-private'],
      grafana: ['grafana-admin-password'],
    };
    const keysJob = service('keys');
    /** Every volume the keys job writes: the key pairs' volume and one per secret. */
    const jobVolumes = mountsOf(keysJob).map((m) => m.source);

    let dir: string;
    /** Volume → the files the keys job leaves in it, from running its own script. */
    let written: Map<string, Map<string, string>>;

    /**
     * Runs the keys job's shell script on this machine, each of its mount targets mapped to a
     * directory of its own, and reads what it leaves in each: what the volumes would hold.
     */
    function runKeysJob(): Map<string, Map<string, string>> {
      const [shell, flags, script] = Array.isArray(keysJob.command) ? keysJob.command : [];
      expect(shell, 'the keys job is a shell script').toBe('sh');
      let local = script!;
      const mounts = mountsOf(keysJob).sort((a, b) => b.target.length - a.target.length);
      for (const m of mounts) {
        const escaped = m.target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        local = local.replace(new RegExp(String.raw`(?<![\w.-])${escaped}(?![\w.-])`, 'g'), join(dir, m.source));
      }
      expect(local, 'the script writes only under its mount targets').not.toMatch(/(?<![\w.-])\/(keys|secrets)\//);
      for (const m of mounts) mkdirSync(join(dir, m.source), { recursive: true });
      const result = spawnSync(shell!, [flags!, local], { cwd: root, encoding: 'utf8' });
      expect(result.stderr, 'the keys job fails').toBe('');
      expect(result.status).toBe(0);
      return new Map(
        mounts.map((m) => {
          const folder = join(dir, m.source);
          return [m.source, new Map(readdirSync(folder).map((file) => [file, readFileSync(join(folder, file), 'utf8')]))];
        }),
      );
    }

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'compose-secrets-'));
      written = runKeysJob();
    }, 60_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const isPrivateKey = (text: string) => text.includes('PRIVATE KEY');

    it('the keys job generates the key pairs into a volume no service mounts, and copies each key into a volume of its own', () => {
      const pairs = mountsOf(keysJob).find((m) => m.target === words(keysJob.command).match(/scripts\/keys\.ts --out (\S+)/)?.[1]);
      expect(pairs, 'scripts/keys.ts writes into a volume of the job').toBeDefined();
      expect([...written.get(pairs!.source)!.keys()].sort()).toEqual(
        keyPairNames.flatMap((name) => [`${name}-private.pem`, `${name}-public.pem`]).sort(),
      );
      for (const name of keyPairNames) {
        for (const half of ['private', 'public']) {
          const file = `${name}-${half}.pem`;
          expect(Object.fromEntries(written.get(`${name}-${half}`)!), `volume ${name}-${half} holds that key alone`).toEqual({
            [file]: written.get(pairs!.source)!.get(file),
          });
        }
      }
      const password = [...written.get('database-password')!.values()];
      expect(password, 'the database password volume holds one password').toHaveLength(1);
      expect(password[0]).toMatch(/^[0-9a-f]{64}$/);
      for (const volume of jobVolumes) expect(compose.volumes ?? {}, `${volume} is a named volume`).toHaveProperty(volume);
    });

    it('the keys job keeps what it generated when it runs again, so restarts rotate nothing', () => {
      expect(runKeysJob()).toEqual(written);
    });

    it('private keys and the password are readable by their owner alone in the volumes', () => {
      for (const [volume, files] of written) {
        for (const [file, text] of files) {
          if (!isPrivateKey(text) && volume !== 'database-password') continue;
          expect(statSync(join(dir, volume, file)).mode & 0o077, `${volume}/${file}`).toBe(0);
        }
      }
    });

    it('each service mounts exactly the secret volumes it needs, read-only', () => {
      for (const [name, s] of Object.entries(compose.services)) {
        if (name === 'keys') continue;
        const mounted = mountsOf(s).filter((m) => jobVolumes.includes(m.source));
        expect(mounted.map((m) => m.source).sort(), `${name}'s secrets`).toEqual([...(secretsOf[name] ?? [])].sort());
        for (const m of mounted) expect(m.readOnly, `${name} mounts ${m.source} read-only`).toBe(true);
        // The image's directories that the job's volumes are seeded from (see the Dockerfile).
        for (const m of mounted) expect(m.target, `${name} finds ${m.source} where the keys job wrote it`).toBe(mountsOf(keysJob).find((j) => j.source === m.source)!.target);
      }
    });

    it('no private key reaches any service but accounts (the token key) and the gateway (the identity key)', () => {
      const privateKeysOf = (name: string) =>
        mountsOf(service(name))
          .filter((m) => jobVolumes.includes(m.source))
          .flatMap((m) => [...written.get(m.source)!].filter(([, text]) => isPrivateKey(text)).map(([file]) => file));
      for (const name of Object.keys(compose.services)) {
        if (name === 'keys') continue;
        const expected = { accounts: ['auth-token-private.pem'], gateway: ['gateway-identity-private.pem'] }[name] ?? [];
        expect(privateKeysOf(name), `private keys ${name} can read`).toEqual(expected);
        for (const [variable, value] of Object.entries(environmentOf(service(name)))) {
          expect(isPrivateKey(value), `${name} ${variable} holds no private key inline`).toBe(false);
        }
      }
    });

    it('every *_FILE variable names a file that the keys job writes into a volume the service mounts', () => {
      const expectedVariables: Record<string, string[]> = {
        postgres: ['POSTGRES_PASSWORD_FILE'],
        accounts: ['AUTH_TOKEN_PRIVATE_KEY_FILE', 'DATABASE_PASSWORD_FILE', 'GATEWAY_IDENTITY_PUBLIC_KEY_FILE'],
        ...Object.fromEntries(subgraphs.map((name) => [name, ['DATABASE_PASSWORD_FILE', 'GATEWAY_IDENTITY_PUBLIC_KEY_FILE']])),
        gateway: ['AUTH_TOKEN_PUBLIC_KEY_FILE', 'GATEWAY_IDENTITY_PRIVATE_KEY_FILE'],
        grafana: ['GF_SECURITY_ADMIN_PASSWORD__FILE'],
      };
      const fileOf: Record<string, (text: string) => boolean> = {
        POSTGRES_PASSWORD_FILE: (text) => text === [...written.get('database-password')!.values()][0],
        DATABASE_PASSWORD_FILE: (text) => text === [...written.get('database-password')!.values()][0],
        AUTH_TOKEN_PRIVATE_KEY_FILE: (text) => text === written.get('auth-token-private')!.get('auth-token-private.pem'),
        AUTH_TOKEN_PUBLIC_KEY_FILE: (text) => text === written.get('auth-token-public')!.get('auth-token-public.pem'),
        GATEWAY_IDENTITY_PRIVATE_KEY_FILE: (text) => text === written.get('gateway-identity-private')!.get('gateway-identity-private.pem'),
        GATEWAY_IDENTITY_PUBLIC_KEY_FILE: (text) => text === written.get('gateway-identity-public')!.get('gateway-identity-public.pem'),
        GF_SECURITY_ADMIN_PASSWORD__FILE: (text) => text === [...written.get('grafana-admin-password')!.values()][0] && /^[0-9a-f]{48}$/.test(text),
      };
      for (const [name, s] of Object.entries(compose.services)) {
        if (name === 'keys') continue;
        const env = environmentOf(s);
        const fileVariables = Object.keys(env).filter((variable) => variable.endsWith('_FILE'));
        expect(fileVariables.sort(), `${name}'s secret files`).toEqual([...(expectedVariables[name] ?? [])].sort());
        for (const variable of fileVariables) {
          const path = env[variable]!;
          const mount = mountsOf(s).find((m) => m.target === posix.dirname(path));
          expect(mount, `${name} ${variable}: ${path} is in a volume it mounts`).toBeDefined();
          const text = written.get(mount!.source)?.get(posix.basename(path));
          expect(text, `${name} ${variable}: the keys job writes ${path}`).toBeDefined();
          expect(fileOf[variable]!(text!), `${name} ${variable} is the right secret`).toBe(true);
        }
      }
    });

    it('no environment holds a password in plain text: PostgreSQL and the subgraphs read it from a file', () => {
      for (const [name, s] of Object.entries(compose.services)) {
        for (const [variable, value] of Object.entries(environmentOf(s))) {
          if (!variable.endsWith('_FILE')) expect(variable, `${name} sets ${variable} inline`).not.toMatch(/PASSWORD|SECRET/);
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
            expect(new URL(value).password, `${name} ${variable} carries a password`).toBe('');
          }
        }
      }
      const password = `/secrets/database-password/${[...written.get('database-password')!.keys()][0]}`;
      expect(environmentOf(service('postgres')).POSTGRES_PASSWORD_FILE).toBe(password);
      for (const { name } of contexts) {
        const env = environmentOf(service(name));
        expect(env.DATABASE_URL, `${name} connects as the user PostgreSQL was initialised with`).toMatch(
          new RegExp(`^postgres(ql)?://${environmentOf(service('postgres')).POSTGRES_USER}@`),
        );
        expect(env.DATABASE_PASSWORD_FILE, `${name} reads the password PostgreSQL was initialised with`).toBe(password);
        // The URL the subgraph connects with, as platform/config.ts builds it from these variables.
        const url = databaseUrlFor(name, { ...env, DATABASE_PASSWORD_FILE: join(dir, 'database-password', posix.basename(password)) });
        expect(decodeURIComponent(new URL(url!).password)).toBe([...written.get('database-password')!.values()][0]);
      }
      expect(dependencyConditions(service('postgres')), 'PostgreSQL starts after its password exists').toMatchObject({
        keys: 'service_completed_successfully',
      });
    });

    it('the image has a directory owned by the services’ user for every volume the keys job fills', () => {
      const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
      const mkdir = dockerfile.match(/^RUN mkdir -p ([^&\n]+)&& chown node:node ([^&\n]+)$/m);
      expect(mkdir, 'the Dockerfile creates and chowns the mount targets').toBeTruthy();
      const [created, owned] = [mkdir![1]!, mkdir![2]!].map((list) => new Set(list.trim().split(/\s+/)));
      for (const m of mountsOf(keysJob)) {
        expect(created, `${m.target} exists in the image`).toContain(m.target);
        expect(owned, `${m.target} belongs to node`).toContain(m.target);
      }
    });
  });
});
