/** Starts the payments subgraph: a payment per order, against a (simulated) payment provider. */
import { createLogger } from '../../platform/logging/logger.ts';
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { paymentsEventConsumer } from './consumers/order-saga-commands.ts';
import type { PaymentsContext } from './context.ts';
import type { PaymentProvider } from './domain/payment-provider.ts';
import { connectPaymentsDatabase, type PaymentsDatabase } from './infrastructure/database.ts';
import { PaymentRepository } from './infrastructure/payment-repository.ts';
import { SimulatedPaymentProvider, type SimulatedProviderOptions } from './infrastructure/simulated-provider.ts';
import { resolvers } from './resolvers.ts';

export interface PaymentsSubgraphOptions extends ContextSubgraphOptions {
  /** Options of the simulated provider (`tok_slow`'s delay). */
  simulatedProvider?: SimulatedProviderOptions;
  /** Another provider than the simulated one, built over the payments database. */
  createProvider?: (db: PaymentsDatabase) => PaymentProvider;
}

export function startPaymentsSubgraph(options: PaymentsSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectPaymentsDatabase(options.databaseUrl);
  const payments = new PaymentRepository(db);
  const provider = options.createProvider?.(db) ?? new SimulatedPaymentProvider(db, options.simulatedProvider);
  return startContextSubgraph<PaymentsContext>(options, {
    name: 'payments',
    moduleUrl: import.meta.url,
    db,
    statements,
    resolvers,
    createContext: (scope) => ({ ...scope, paymentLoader: payments.createLoader() }),
    consumers: [paymentsEventConsumer({ db, payments, provider, clock: () => new Date(), log: createLogger('payments.saga-commands') })],
  });
}
