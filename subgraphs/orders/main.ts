/** The orders subgraph as its own process: `node --import tsx subgraphs/orders/main.ts`. */
import { intFromEnv } from '../../platform/config.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { defaultStepTimeoutMs } from './saga/saga-runner.ts';
import { orderSaga } from './saga/wiring.ts';
import { startOrdersSubgraph } from './subgraph.ts';
import { defaultReturnWindowDays } from './use-cases/returns.ts';

const returnWindowDays = intFromEnv('ORDER_RETURN_WINDOW_DAYS', defaultReturnWindowDays);
if (returnWindowDays < 0) throw new Error(`ORDER_RETURN_WINDOW_DAYS must be 0 or more days, got ${returnWindowDays}`);

await runContextProcess('orders', (base) =>
  startOrdersSubgraph({
    ...base,
    saga: orderSaga({ stepTimeoutMs: intFromEnv('SAGA_STEP_TIMEOUT_MS', defaultStepTimeoutMs) }),
    snapshotEvery: intFromEnv('ORDER_SNAPSHOT_EVERY', 20),
    returnWindowMs: returnWindowDays * 86_400_000,
  }),
);
