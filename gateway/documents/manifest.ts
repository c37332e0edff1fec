/**
 * A client app's trusted documents, in the format of Apollo's persisted query manifest (what
 * `@apollo/generate-persisted-query-manifest` writes, and Apollo Router reads):
 *
 *   { "format": "apollo-persisted-query-manifest", "version": 1,
 *     "operations": [{ "id": "<sha256 of body, hex>", "name": "Browse", "type": "query", "body": "query Browse { … }" }] }
 *
 * A manifest is checked whole before it is stored: a forged one (an id that is not its body's
 * hash) would let an app run a document nobody reviewed under a reviewed id.
 */
import { createHash } from 'node:crypto';
import { getOperationAST, parse } from 'graphql';

export const manifestFormat = 'apollo-persisted-query-manifest';

export interface ManifestOperation {
  id: string;
  name: string;
  type: 'query' | 'mutation' | 'subscription';
  body: string;
}

export interface Manifest {
  format: typeof manifestFormat;
  version: 1;
  operations: ManifestOperation[];
}

/** The id of a document: its SHA-256, lower-case hex (the APQ and manifest convention). */
export function documentId(body: string): string {
  return createHash('sha256').update(body, 'utf8').digest('hex');
}

export const documentIdPattern = /^[0-9a-f]{64}$/;

export class InvalidManifest extends Error {
  override readonly name = 'InvalidManifest';
}

/** The manifest, checked: format, version, each id the hash of its body, each body one parsable operation of its type. */
export function checkManifest(value: unknown): Manifest {
  if (!value || typeof value !== 'object') throw new InvalidManifest('the manifest is not a JSON object');
  const { format, version, operations } = value as Record<string, unknown>;
  if (format !== manifestFormat) throw new InvalidManifest(`format must be "${manifestFormat}", got ${JSON.stringify(format)}`);
  if (version !== 1) throw new InvalidManifest(`version must be 1, got ${JSON.stringify(version)}`);
  if (!Array.isArray(operations)) throw new InvalidManifest('operations must be a list');
  const seen = new Set<string>();
  return {
    format: manifestFormat,
    version: 1,
    operations: operations.map((operation: unknown, index) => {
      const { id, name, type, body } = (operation ?? {}) as Record<string, unknown>;
      const where = `operation ${index}${typeof name === 'string' ? ` (${name})` : ''}`;
      if (typeof body !== 'string' || body.trim() === '') throw new InvalidManifest(`${where}: body must be the document's text`);
      if (typeof id !== 'string' || !documentIdPattern.test(id)) throw new InvalidManifest(`${where}: id must be a SHA-256 in lower-case hex`);
      if (documentId(body) !== id) throw new InvalidManifest(`${where}: id is not the SHA-256 of its body (forged or edited by hand)`);
      if (type !== 'query' && type !== 'mutation' && type !== 'subscription') throw new InvalidManifest(`${where}: type must be query, mutation or subscription`);
      let kind: string | undefined;
      try {
        kind = getOperationAST(parse(body), typeof name === 'string' ? name : undefined)?.operation;
      } catch (error) {
        throw new InvalidManifest(`${where}: body does not parse: ${(error as Error).message}`);
      }
      if (kind !== type) throw new InvalidManifest(`${where}: body is ${kind ? `a ${kind}` : 'not one operation'}, type says ${type}`);
      if (seen.has(id)) throw new InvalidManifest(`${where}: id ${id} appears twice`);
      seen.add(id);
      return { id, name: typeof name === 'string' ? name : '', type, body };
    }),
  };
}
