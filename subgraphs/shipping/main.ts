/** The shipping subgraph as its own process: `node --import tsx subgraphs/shipping/main.ts`. */
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { startShippingSubgraph } from './subgraph.ts';

await runContextProcess('shipping', startShippingSubgraph);
