/** The orders subgraph as its own process: `node --import tsx subgraphs/orders/main.ts`. */
import { intFromEnv } from '../../platform/config.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { defaultStepTimeoutMs } from './saga/saga-runner.ts';
import { orderSaga } from './saga/wiring.ts';
import { startOrdersSubgraph } from './subgraph.ts';
import { defaultReturnWindowDays } from './use-cases/returns.ts';

// Read inside `start`, after runContextProcess has checked the environment against the schema.
await runContextProcess('orders', (base) =>
  startOrdersSubgraph({
    ...base,
    saga: orderSaga({ stepTimeoutMs: intFromEnv('SAGA_STEP_TIMEOUT_MS', defaultStepTimeoutMs) }),
    snapshotEvery: intFromEnv('ORDER_SNAPSHOT_EVERY', 20),
    returnWindowMs: intFromEnv('ORDER_RETURN_WINDOW_DAYS', defaultReturnWindowDays) * 86_400_000,
  }),
);
