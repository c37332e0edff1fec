/** What a request of the payments subgraph works with. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { Payment } from './domain/payment.ts';

export interface PaymentsContext extends RequestScope {
  /** Payments by order id, batched per request. */
  paymentLoader: DataLoader<string, Payment | null>;
}
