/**
 * Composes the supergraph from every context's `schema.graphql` with @apollo/composition and
 * writes `schema/supergraph.graphql` (`npm run compose`). Composition errors fail; so do hints
 * that are not listed in `schema/accepted-hints.json`, because a hint is often a design slip.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { contexts, defaultSubgraphUrl } from '../platform/contexts.ts';

const root = new URL('../', import.meta.url);
export const supergraphPath = fileURLToPath(new URL('schema/supergraph.graphql', root));
const acceptedHintsPath = fileURLToPath(new URL('schema/accepted-hints.json', root));

export interface Composition {
  supergraphSdl: string;
  /** Hints not accepted in schema/accepted-hints.json, as `CODE: message`. */
  unacceptedHints: string[];
}

export function composeSupergraph(): Composition {
  const services = contexts.map(({ name }) => ({
    name,
    url: defaultSubgraphUrl(name),
    typeDefs: parse(readFileSync(fileURLToPath(new URL(`subgraphs/${name}/schema.graphql`, root)), 'utf8')),
  }));
  const result = composeServices(services);
  if (result.errors) {
    throw new Error(`Composition failed:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  }
  const accepted = new Set<string>(JSON.parse(readFileSync(acceptedHintsPath, 'utf8')) as string[]);
  const unacceptedHints = result.hints
    .map((hint) => `${hint.definition.code}: ${hint.message}`)
    .filter((hint) => !accepted.has(hint));
  return { supergraphSdl: `${result.supergraphSdl.trimEnd()}\n`, unacceptedHints };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const { supergraphSdl, unacceptedHints } = composeSupergraph();
    if (unacceptedHints.length > 0) {
      console.error(`Composition produced hints that are not accepted (fix the schemas, or add them to schema/accepted-hints.json):\n${unacceptedHints.map((h) => `- ${h}`).join('\n')}`);
      process.exit(1);
    }
    writeFileSync(supergraphPath, supergraphSdl);
    console.log(`wrote ${supergraphPath}`);
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }
}
