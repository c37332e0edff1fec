/**
 * The payments subgraph as its own process: `node --import tsx subgraphs/payments/main.ts`.
 * `PAYMENT_PROVIDER_SLOW_DELAY_MS` sets how long the simulated provider takes over `tok_slow`.
 */
import { intFromEnv } from '../../platform/config.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { defaultSlowTokenDelayMs } from './infrastructure/simulated-provider.ts';
import { startPaymentsSubgraph } from './subgraph.ts';

// Read inside `start`, after runContextProcess has checked the environment against the schema.
await runContextProcess('payments', (base) =>
  startPaymentsSubgraph({ ...base, simulatedProvider: { slowTokenDelayMs: intFromEnv('PAYMENT_PROVIDER_SLOW_DELAY_MS', defaultSlowTokenDelayMs) } }),
);
