/**
 * The README's configuration table is the operator's only list of settings, so every environment
 * variable the code reads must appear in README.md, in backticks. The reads are found in the
 * source text of every .ts file of gateway/, platform/, subgraphs/, scripts/ and test/:
 * - `process.env.NAME` and `process.env['NAME']`, but not assignments to them;
 * - the same through a variable bound to `process.env` (`env: Env = process.env`,
 *   `const env = { ...process.env }`), as platform/config.ts and the bus factory take it;
 * - names given to platform/config.ts's helpers that take a variable's name and read it
 *   (`intFromEnv('NAME', …)`, `readSecret(keyNames.x)`), found from their signatures so a new
 *   helper is checked too;
 * - per-context names built as `${context.toUpperCase()}_SUFFIX`, expanded over the contexts.
 * Names computed any other way (a loop over a list, `SUBGRAPH_URL_<NAME>` matched by a regular
 * expression) are not seen: keep those documented by hand.
 * The table is also held equal to the schema that checks every value at start
 * (platform/config/schema.ts, docs/decisions/0032): a row for each of its variables, and each row's
 * variable in it; and every read found above must be a variable of that schema.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { keyNames } from '../platform/config.ts';
import { subgraphUrlPrefix, variables } from '../platform/config/schema.ts';
import { variableOf } from '../platform/config/validation.ts';
import { contextNames } from '../platform/contexts.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const scannedFolders = ['gateway', 'platform', 'subgraphs', 'scripts', 'test'];
// Its examples of reads below are not reads.
const thisFile = relative(root, fileURLToPath(import.meta.url));

interface EnvironmentRead {
  name: string;
  /** `path:line`, relative to the repository. */
  at: string;
}

const identifier = String.raw`[A-Za-z_$][\w$]*`;
const variableName = String.raw`[A-Z][A-Z0-9_]*`;
/** A name as code writes it: a string literal, a key of `keyNames`, or a per-context template. */
const nameArgument = String.raw`(?:(['"\x60])(${variableName})\1|keyNames\.(${identifier})|\x60\$\{\s*[\w$.]+\.toUpperCase\(\)\s*\}(_[A-Z0-9_]+)\x60)`;
/** An assignment (`=` but not `==`, `===` or `??=`) follows: a write, not a read. */
const notAssigned = String.raw`(?!\s*=(?!=))`;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The names of platform/config.ts's helpers that read the variable named by their first argument. */
function configHelpers(): string[] {
  const source = readFileSync(join(root, 'platform/config.ts'), 'utf8');
  return [...source.matchAll(/export function (\w+)\(name: string\b[^)]*\benv: Env = process\.env\b/g)].map((match) => match[1]!);
}

function namesOf(match: RegExpMatchArray, offset: number): string[] {
  const [literal, keyName, perContextSuffix] = [match[offset + 2], match[offset + 3], match[offset + 4]];
  if (literal) return [literal];
  if (keyName) return keyName in keyNames ? [keyNames[keyName as keyof typeof keyNames]] : [];
  if (perContextSuffix) return contextNames.map((context) => `${context.toUpperCase()}${perContextSuffix}`);
  return [];
}

/** Every read of an environment variable in one file's source text. */
function environmentReads(source: string, file: string, helpers: string[]): EnvironmentRead[] {
  const reads: EnvironmentRead[] = [];
  const lineOf = (index: number) => source.slice(0, index).split('\n').length;
  const add = (names: string[], index: number) => {
    for (const name of names) reads.push({ name, at: `${file}:${lineOf(index)}` });
  };
  const aliases = new Set(['process.env']);
  const binding = new RegExp(String.raw`(${identifier})\s*(?::\s*(?:[^=;{}(),<>]|<[^<>]*>)*?)?=\s*(?:\{\s*\.\.\.\s*)?process\.env\b`, 'g');
  for (const match of source.matchAll(binding)) aliases.add(match[1]!);
  for (const alias of aliases) {
    const owner = String.raw`(?<![\w$.])${escapeRegExp(alias)}`;
    for (const match of source.matchAll(new RegExp(String.raw`${owner}\??\.(${variableName})(?![\w$])${notAssigned}`, 'g'))) add([match[1]!], match.index!);
    for (const match of source.matchAll(new RegExp(String.raw`${owner}\??\.?\[\s*${nameArgument}\s*\]${notAssigned}`, 'g'))) add(namesOf(match, 0), match.index!);
  }
  for (const helper of helpers) {
    for (const match of source.matchAll(new RegExp(String.raw`(?<![\w$])${helper}\(\s*${nameArgument}`, 'g'))) add(namesOf(match, 0), match.index!);
  }
  return reads;
}

function tsFilesUnder(folder: string): string[] {
  return readdirSync(join(root, folder), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .filter((file) => !file.split('/').includes('node_modules') && file !== thisFile)
    .sort();
}

function readsInTree(folders = scannedFolders): EnvironmentRead[] {
  const helpers = configHelpers();
  return folders.flatMap(tsFilesUnder).flatMap((file) => environmentReads(readFileSync(join(root, file), 'utf8'), file, helpers));
}

/** Whether `name` is written in some inline code span of the markdown, as a whole name. */
function inBackticks(markdown: string, name: string): boolean {
  const wholeName = new RegExp(String.raw`(?<![A-Za-z0-9_])${name}(?![A-Za-z0-9_])`);
  return [...markdown.matchAll(/`([^`\n]+)`/g)].some((span) => wholeName.test(span[1]!));
}

describe('the configuration table in README.md', () => {
  it('names every environment variable that the code reads, in backticks', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const byName = new Map<string, string[]>();
    for (const read of readsInTree()) byName.set(read.name, [...(byName.get(read.name) ?? []), read.at]);

    const undocumented = [...byName].filter(([name]) => !inBackticks(readme, name)).map(([name, at]) => `${name} (read at ${at.join(', ')})`).sort();

    expect(undocumented, 'environment variables read by the code but missing from README.md').toEqual([]);
  });
});

/** The names in the first column of the table under README.md's "## Configuration", as written. */
function configurationTableNames(readme: string): string[] {
  const start = readme.indexOf('\n## Configuration\n');
  const end = readme.indexOf('\n## ', start + 1);
  const rows = readme.slice(start, end === -1 ? undefined : end).split('\n').filter((line) => line.startsWith('| `'));
  return rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((span) => span[1]!));
}

describe('the configuration schema (platform/config/schema.ts) and the README table', () => {
  const tableNames = configurationTableNames(readFileSync(join(root, 'README.md'), 'utf8'));
  // SUBGRAPH_URL_<NAME> is one row of the table and one pattern of the schema.
  const schemaNames = [...Object.keys(variables), `${subgraphUrlPrefix}<NAME>`];

  it('has a row of the table for every variable of the schema', () => {
    expect(schemaNames.filter((name) => !tableNames.includes(name)), 'in the schema but not in the table').toEqual([]);
  });

  it('has every variable of the table in the schema, so each is checked at start', () => {
    expect(tableNames.filter((name) => !schemaNames.includes(name)), 'in the table but not in the schema').toEqual([]);
  });

  it('knows every environment variable that the code reads', () => {
    const unknown = readsInTree().filter((read) => !variableOf(read.name)).map((read) => `${read.name} (read at ${read.at})`);
    expect(unknown, 'read by the code but not in platform/config/schema.ts').toEqual([]);
  });

  it('finds the table, with the rows of both ends of it', () => {
    expect(tableNames).toContain('NODE_ENV');
    expect(tableNames).toContain('MIGRATE_SERVER_URL');
  });
});

describe('finding environment variable reads', () => {
  // Built at run time from pieces, so that this file's own text holds no reads.
  const env = ['process', 'env'].join('.');
  const helpers = ['intFromEnv', 'readSecret'];
  const names = (source: string) => environmentReads(source, 'example.ts', helpers).map((read) => read.name).sort();

  it('finds process.env.NAME and process.env[NAME] in quotes, but not assignments to them', () => {
    const source = [
      `const a = ${env}.PLAIN_READ ?? 'x';`,
      `if (${env}['QUOTED_READ'] === 'y') {}`,
      `${env}.LOG_LEVEL ??= 'warn';`,
      `${env}.WRITTEN = 'true';`,
      `${env}["ALSO_WRITTEN"] = 'true';`,
      `const b = ${env}.lowercase;`,
    ].join('\n');
    expect(names(source)).toEqual(['LOG_LEVEL', 'PLAIN_READ', 'QUOTED_READ']);
  });

  it('finds reads through a variable bound to process.env, and only in a file that binds one', () => {
    const bound = [
      `export function f(env: Record<string, string | undefined> = ${env}) { return env.BOUND_READ ?? env['BOUND_QUOTED']; }`,
      `const copy = { ...${env} };`,
      `copy.COPY_READ;`,
    ].join('\n');
    expect(names(bound)).toEqual(['BOUND_QUOTED', 'BOUND_READ', 'COPY_READ']);
    expect(names(`const env = parseComposeFile(); env.NOT_OURS;`)).toEqual([]);
  });

  it("finds names given to platform/config.ts's helpers: literals, keyNames and per-context templates", () => {
    const source = [
      `intFromEnv('HELPER_READ', 3);`,
      `readSecret(keyNames.authTokenPublic);`,
      `intFromEnv(\`\${name.toUpperCase()}_PORT\`, 4001);`,
      `${env}[\`\${context.toUpperCase()}_DATABASE_URL\`];`,
      `someOtherFunction('NOT_A_READ');`,
    ].join('\n');
    expect(names(source)).toEqual(
      [
        'HELPER_READ',
        keyNames.authTokenPublic,
        ...contextNames.map((context) => `${context.toUpperCase()}_PORT`),
        ...contextNames.map((context) => `${context.toUpperCase()}_DATABASE_URL`),
      ].sort(),
    );
  });

  it("knows platform/config.ts's name-taking helpers from their signatures", () => {
    expect(configHelpers().sort()).toEqual(['intFromEnv', 'readSecret', 'requireSecret']);
  });

  it('finds the reads of the real tree in each of those ways', () => {
    const found = new Set(readsInTree().map((read) => read.name));
    // One of each: process.env.X, a bound `env`, intFromEnv, keyNames, a per-context template.
    for (const name of ['DATABASE_POOL_SIZE', 'NATS_URL', 'GATEWAY_PORT', keyNames.gatewayIdentityPublic, 'SHIPPING_PORT', 'PAYMENTS_DATABASE_URL']) {
      expect(found, name).toContain(name);
    }
  });
});

describe('the NATS server of the tests', () => {
  it('is read from TEST_NATS_URL in test/support/nats.ts alone; no test reads the services’ NATS_URL', () => {
    const reads = readsInTree(['test']);

    expect(reads.filter((read) => read.name === 'NATS_URL')).toEqual([]);
    expect(new Set(reads.filter((read) => read.name === 'TEST_NATS_URL').map((read) => read.at.split(':')[0]))).toEqual(new Set(['test/support/nats.ts']));
  });
});
