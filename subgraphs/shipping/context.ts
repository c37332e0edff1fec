/** What a request of the shipping subgraph works with. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { ShipmentRepository, ShipmentView } from './infrastructure/shipment-repository.ts';

export interface ShippingContext extends RequestScope {
  shipments: ShipmentRepository;
  /** Shipments by order id, batched per request. */
  shipmentLoader: DataLoader<string, ShipmentView | null>;
  clock: () => Date;
}
