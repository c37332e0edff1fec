import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { composeSupergraph, supergraphPath } from '../scripts/compose.ts';

describe('the supergraph', () => {
  it('composes from the subgraph schemas without errors or unaccepted hints', () => {
    const { unacceptedHints } = composeSupergraph();
    expect(unacceptedHints).toEqual([]);
  });

  it('is committed as composed: run `npm run compose` after changing a subgraph schema', () => {
    expect(readFileSync(supergraphPath, 'utf8')).toBe(composeSupergraph().supergraphSdl);
  });
});
