/** The catalog subgraph as its own process: `node --import tsx subgraphs/catalog/main.ts`. */
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { startCatalogSubgraph } from './subgraph.ts';

await runContextProcess('catalog', startCatalogSubgraph);
