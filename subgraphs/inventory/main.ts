/** The inventory subgraph as its own process: `node --import tsx subgraphs/inventory/main.ts`. */
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { startInventorySubgraph } from './subgraph.ts';

await runContextProcess('inventory', startInventorySubgraph);
