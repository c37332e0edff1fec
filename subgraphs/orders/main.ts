/** The orders subgraph as its own process: `node --import tsx subgraphs/orders/main.ts`. */
import { intFromEnv } from '../../platform/config.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { defaultStepTimeoutMs } from './saga/saga-runner.ts';
import { orderSaga } from './saga/wiring.ts';
import { startOrdersSubgraph } from './subgraph.ts';

await runContextProcess('orders', (base) =>
  startOrdersSubgraph({
    ...base,
    saga: orderSaga({ stepTimeoutMs: intFromEnv('SAGA_STEP_TIMEOUT_MS', defaultStepTimeoutMs) }),
    snapshotEvery: intFromEnv('ORDER_SNAPSHOT_EVERY', 20),
  }),
);
