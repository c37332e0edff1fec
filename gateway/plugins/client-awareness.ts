/**
 * Client awareness: which app is calling, by Apollo's convention (`apollographql-client-name` and
 * `apollographql-client-version` headers; over graphql-ws the `connection_init` payload may carry
 * them, since a browser cannot set headers on a WebSocket). The core reads them once per
 * connection (`clientAppOf`, bounded and checked: a name is written in logs and Redis keys and
 * names a manifest file); this plugin decides what an app the configuration does not declare may
 * do, and passes the app on to subgraphs.
 *
 * Apps are declared in configuration (`GATEWAY_CLIENTS` or `GATEWAY_CLIENTS_FILE`):
 *   { "web": { "kind": "web" }, "ios": { "kind": "mobile" }, "android": { "kind": "mobile", "apq": false } }
 * With none declared every app is welcome (the gateway only observes). With some declared, a
 * request naming another app, or none: refused with UNKNOWN_CLIENT in production, let through
 * and logged once per name in development (docs/decisions/0025).
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from '../../platform/logging/logger.ts';
import type { ClientApp, GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

type Env = Record<string, string | undefined>;

export const clientNameHeader = 'apollographql-client-name';
export const clientVersionHeader = 'apollographql-client-version';

export const ClientAwarenessCode = {
  /** The client name or version is too long or has characters outside the allowed set. */
  CLIENT_NAME_INVALID: 'CLIENT_NAME_INVALID',
  /** The app is not one the gateway's configuration declares. */
  UNKNOWN_CLIENT: 'UNKNOWN_CLIENT',
} as const;

/** Names a file and a Redis key: letters, digits, `.`, `_`, `-`; not starting with a dot. */
export const clientNamePattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
/** `4.2.0`, `2026.12.1+471`, `1.0 (312)`. */
const versionPattern = /^[A-Za-z0-9._+()\- ]{1,32}$/;

/** The kind of an app decides its defaults: a mobile app runs only its manifest. */
export type ClientKind = 'web' | 'mobile';

/** One declared app. */
export interface ClientDeclaration {
  kind: ClientKind;
  /**
   * `manifest`: only the operations of its published manifest run (by hash or by text); `free`:
   * any valid operation. @default 'manifest' for a mobile app, 'free' for a web app
   */
  documents?: 'manifest' | 'free';
  /**
   * May register automatic persisted queries (APQ). Never for an app bound to its manifest:
   * registering would let it run anything. @default false
   */
  apq?: boolean;
}

/** What the gateway lets one app do, its defaults filled in. */
export interface ClientPolicy {
  /** The declared name, or undefined for an app the configuration does not know. */
  readonly name: string | undefined;
  readonly kind: ClientKind | undefined;
  readonly documents: 'manifest' | 'free';
  readonly apq: boolean;
}

export interface ClientRegistryOptions {
  /** The apps, by the name they send. @default {} (every app welcome, none bound to a manifest) */
  clients?: Record<string, ClientDeclaration>;
  /**
   * What happens to a request naming an app not declared, or none, when some are declared.
   * @default 'refuse' in production, 'allow' in development
   */
  unknownClients?: 'refuse' | 'allow';
}

/** The declared apps and the policy of each; shared by client awareness, rate limits and trusted documents. */
export interface ClientRegistry {
  /** Whether the configuration declares any app (if not, every app is welcome). */
  readonly declared: boolean;
  readonly unknownClients: 'refuse' | 'allow';
  policyOf(client: ClientApp): ClientPolicy;
  names(): string[];
  /** Throws UNKNOWN_CLIENT when apps are declared, this one is not, and unknown apps are refused. */
  refuseUnknown(client: ClientApp): void;
}

const unknownPolicy: ClientPolicy = { name: undefined, kind: undefined, documents: 'free', apq: false };

export function clientRegistry(options: ClientRegistryOptions & { production: boolean }): ClientRegistry {
  const declarations = new Map<string, ClientPolicy>();
  for (const [name, declaration] of Object.entries(options.clients ?? {})) {
    // Fail at start-up, not on the first request.
    if (!clientNamePattern.test(name)) throw new Error(`client name "${name}" must match ${clientNamePattern}`);
    if (declaration?.kind !== 'web' && declaration?.kind !== 'mobile') throw new Error(`client "${name}": kind must be "web" or "mobile"`);
    const documents = declaration.documents ?? (declaration.kind === 'mobile' ? 'manifest' : 'free');
    if (documents !== 'manifest' && documents !== 'free') throw new Error(`client "${name}": documents must be "manifest" or "free"`);
    const apq = declaration.apq ?? false;
    if (apq && documents === 'manifest') throw new Error(`client "${name}" is bound to its manifest: it cannot also register persisted queries (apq)`);
    declarations.set(name, { name, kind: declaration.kind, documents, apq });
  }
  const unknownClients = options.unknownClients ?? (options.production ? 'refuse' : 'allow');
  const policyOf = (client: ClientApp) => (client.name !== undefined ? declarations.get(client.name) : undefined) ?? unknownPolicy;
  return {
    declared: declarations.size > 0,
    unknownClients,
    policyOf,
    names: () => [...declarations.keys()],
    refuseUnknown(client) {
      if (declarations.size === 0 || unknownClients === 'allow' || policyOf(client).name !== undefined) return;
      throw new GatewayRefusal(
        ClientAwarenessCode.UNKNOWN_CLIENT,
        client.name ? `Unknown client "${client.name}": send the name of a registered app in ${clientNameHeader}` : `Name your app in the ${clientNameHeader} header`,
        { status: 400 },
      );
    },
  };
}

/** `GATEWAY_CLIENTS` (JSON) or `GATEWAY_CLIENTS_FILE` (a JSON file), and `GATEWAY_UNKNOWN_CLIENTS` (`refuse` | `allow`). */
export function clientRegistryOptionsFromEnv(env: Env = process.env): ClientRegistryOptions {
  const text = env.GATEWAY_CLIENTS || (env.GATEWAY_CLIENTS_FILE ? readFileSync(env.GATEWAY_CLIENTS_FILE, 'utf8') : undefined);
  let clients: Record<string, ClientDeclaration> | undefined;
  if (text) {
    try {
      clients = JSON.parse(text) as Record<string, ClientDeclaration>;
    } catch (error) {
      throw new Error(`GATEWAY_CLIENTS${env.GATEWAY_CLIENTS ? '' : '_FILE'} is not valid JSON: ${(error as Error).message}`);
    }
  }
  const unknown = env.GATEWAY_UNKNOWN_CLIENTS;
  if (unknown !== undefined && unknown !== '' && unknown !== 'refuse' && unknown !== 'allow') throw new Error(`GATEWAY_UNKNOWN_CLIENTS must be "refuse" or "allow", got "${unknown}"`);
  return { ...(clients ? { clients } : {}), ...(unknown ? { unknownClients: unknown } : {}) };
}

const first = (value: unknown): unknown => (Array.isArray(value) ? value[0] : value);

/** A header's value, from HTTP headers or a `connection_init` payload (its top level, or its `headers`). */
function valueOf(name: string, headers: IncomingHttpHeaders, payload: Record<string, unknown> | undefined): unknown {
  const fromPayload = (source: Record<string, unknown> | undefined) => {
    if (!source || typeof source !== 'object') return undefined;
    for (const [key, value] of Object.entries(source)) if (key.toLowerCase() === name) return value;
    return undefined;
  };
  return fromPayload(payload) ?? fromPayload(payload?.headers as Record<string, unknown> | undefined) ?? first(headers[name]);
}

/**
 * The app a request names. Throws CLIENT_NAME_INVALID for a name or version outside the allowed
 * length and characters: such a value would otherwise reach logs, Redis keys and file names.
 */
export function clientAppOf(headers: IncomingHttpHeaders, connectionParams?: Record<string, unknown>): ClientApp {
  const read = (header: string, pattern: RegExp, allowed: string): string | undefined => {
    const value = valueOf(header, headers, connectionParams);
    if (value === undefined || value === null || value === '') return undefined;
    const text = typeof value === 'string' ? value.trim() : undefined;
    if (text === undefined || !pattern.test(text)) {
      throw new GatewayRefusal(ClientAwarenessCode.CLIENT_NAME_INVALID, `${header} must be ${allowed}`, { status: 400 });
    }
    return text;
  };
  return {
    name: read(clientNameHeader, clientNamePattern, 'at most 64 letters, digits, . _ - (not starting with a dot)'),
    version: read(clientVersionHeader, versionPattern, 'at most 32 letters, digits, spaces, . _ - + ( )'),
  };
}

/** Log fields naming the app: in every gateway line about a request. */
export function clientFields(client: ClientApp | undefined): Record<string, string> {
  return { ...(client?.name ? { clientName: client.name } : {}), ...(client?.version ? { clientVersion: client.version } : {}) };
}

export interface ClientAwarenessOptions {
  registry: ClientRegistry;
  log: Logger;
  /** Distinct unknown names logged (each once) before the rest go unlogged: names are the client's to invent. @default 100 */
  maxLoggedUnknownNames?: number;
}

export function clientAwareness(options: ClientAwarenessOptions): GatewayPlugin {
  const { registry, log } = options;
  const logged = new Set<string>();
  const maxLogged = options.maxLoggedUnknownNames ?? 100;
  return {
    name: 'client-awareness',
    onConnection(connection) {
      if (!registry.declared || registry.policyOf(connection.client).name !== undefined) return;
      registry.refuseUnknown(connection.client);
      const key = connection.client.name ?? '(unnamed)';
      if (logged.has(key) || logged.size >= maxLogged) return;
      logged.add(key);
      log.warn('a client the configuration does not declare is let in (development)', { ...clientFields(connection.client), transport: connection.transport, declared: registry.names() });
    },
    onSubgraphRequest(request) {
      // Subgraphs see which app asked (their logs, accounts' sessions); headers of fetches only.
      const client = request.context?.client;
      if (request.kind !== 'fetch' || !client) return;
      if (client.name) request.headers[clientNameHeader] = client.name;
      if (client.version) request.headers[clientVersionHeader] = client.version;
    },
  };
}
