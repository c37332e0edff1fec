/** Starts the shipping subgraph: a shipment per order, moved along by the carrier. */
import { createLogger } from '../../platform/logging/logger.ts';
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { shippingEventConsumer } from './consumers/order-saga-commands.ts';
import type { ShippingContext } from './context.ts';
import { connectShippingDatabase } from './infrastructure/database.ts';
import { ShipmentRepository } from './infrastructure/shipment-repository.ts';
import { resolvers } from './resolvers.ts';

export function startShippingSubgraph(options: ContextSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectShippingDatabase(options.databaseUrl);
  const shipments = new ShipmentRepository(db);
  const clock = () => new Date();
  return startContextSubgraph<ShippingContext>(options, {
    name: 'shipping',
    moduleUrl: import.meta.url,
    db,
    statements,
    resolvers,
    createContext: (scope) => ({ ...scope, shipments, shipmentLoader: shipments.createLoader(), clock }),
    consumers: [shippingEventConsumer({ db, shipments, clock, log: createLogger('shipping.saga-commands') })],
  });
}
