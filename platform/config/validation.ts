/**
 * Checks the raw environment against platform/config/schema.ts before a process starts anything,
 * and says every problem at once: the variable (or the flag it came from), its value (never a
 * key's or a password's) and what is expected. A variable the schema does not know is left alone
 * (the environment holds PATH, HOME and the like), except the names that carry a subgraph's name
 * (`SUBGRAPH_URL_<NAME>`, `SUBGRAPH_TIMEOUT_MS_<NAME>`, …): a misspelled one would be silently
 * ignored, so it is refused.
 */
import { contextNames } from '../contexts.ts';
import { perSubgraphSettings, subgraphUrl, subgraphUrlPrefix, text, variables, type Scope, type Variable } from './schema.ts';

type Env = Record<string, string | undefined>;

/** A configuration the process must not start with; its message lists every problem, one a line. */
export class ConfigurationError extends Error {
  override name = 'ConfigurationError';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

export interface CheckOptions {
  /** How a variable was given when not as itself, e.g. `{ GATEWAY_PORT: '--port' }`. */
  givenAs?: Record<string, string>;
}

/** The value as it may be printed: keys and passwords hidden, a URL's password masked. */
function shown(value: string, variable: Variable): string {
  if (variable.secret) return '(hidden)';
  if (!variable.url) return JSON.stringify(value);
  return JSON.stringify(value.replace(/(\/\/[^/:@]*:)[^/@]*@/g, '$1***@'));
}

/**
 * The schema's variable for a name: its own, a per-subgraph one (`SUBGRAPH_URL_<NAME>`,
 * `SUBGRAPH_TIMEOUT_MS_<NAME>`, with the name it gives), or a `<NAME>_FILE` of a key or password.
 */
export function variableOf(name: string): { variable: Variable; subgraph?: string } | undefined {
  if (variables[name]) return { variable: variables[name] };
  if (name.startsWith(subgraphUrlPrefix)) return { variable: subgraphUrl, subgraph: name.slice(subgraphUrlPrefix.length) };
  for (const [setting, schema] of Object.entries(perSubgraphSettings)) {
    if (name.startsWith(`${setting}_`)) return { variable: { schema, scopes: variables[setting]!.scopes }, subgraph: name.slice(setting.length + 1) };
  }
  // `*_FILE`: a path to a file holding a key or a password.
  const base = name.endsWith('_FILE') ? variables[name.slice(0, -'_FILE'.length)] : undefined;
  if (base?.file) return { variable: { schema: text, scopes: base.scopes } };
  return undefined;
}

/** Every problem of `env` for a process of these scopes; none when it may start. */
export function configurationProblems(env: Env, scopes: readonly Scope[], { givenAs = {} }: CheckOptions = {}): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '') continue;
    const known = variableOf(name);
    if (!known || !known.variable.scopes.some((scope) => scopes.includes(scope))) continue;
    const label = givenAs[name] ?? name;
    if (known.subgraph !== undefined && !(contextNames as readonly string[]).includes(known.subgraph.toLowerCase())) {
      problems.push(`${label} names no subgraph "${known.subgraph.toLowerCase()}": expected one of ${contextNames.join(', ')}`);
      continue;
    }
    const result = known.variable.schema.safeParse(value);
    if (!result.success) problems.push(`${label}${label.startsWith('--') ? ' ' : '='}${shown(value, known.variable)} is invalid: expected ${result.error.issues[0]?.message ?? 'another value'}`);
  }
  return problems;
}

/** Throws a ConfigurationError naming every problem of `env` for a process of these scopes. */
export function checkConfiguration(env: Env, scopes: readonly Scope[], options: CheckOptions = {}): void {
  const problems = configurationProblems(env, scopes, options);
  if (problems.length > 0) throw new ConfigurationError(problems);
}
