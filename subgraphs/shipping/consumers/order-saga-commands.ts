/**
 * The order saga's shipment commands (CreateShipment, CancelShipment), each answered with a
 * reply event to the outbox in the transaction that records it. A command that breaks the
 * contract throws: the bus retries it, then parks it as a dead letter for a person to look at.
 */
import type { CancelShipment, CreateShipment } from '../../../platform/events/contracts/order-saga.ts';
import { shippingConsumer } from '../../../platform/events/consumers.ts';
import { causedBy, type EventEnvelope } from '../../../platform/events/envelope.ts';
import { handleOnce } from '../../../platform/events/inbox.ts';
import { isUuid } from '../../../platform/ids.ts';
import type { Logger } from '../../../platform/logging/logger.ts';
import type { ContextConsumer } from '../../../platform/subgraph/context-subgraph.ts';
import { checkCreateShipment, decideCancel, decideCreate, InvalidShipmentCommand, type ShipmentDecision } from '../domain/shipment.ts';
import type { ShippingDatabase } from '../infrastructure/database.ts';
import type { ShipmentRepository } from '../infrastructure/shipment-repository.ts';

export type ShipmentCommand = { type: 'CreateShipment'; request: CreateShipment } | { type: 'CancelShipment'; orderId: string };

export interface ShippingConsumerDeps {
  db: ShippingDatabase;
  shipments: ShipmentRepository;
  clock: () => Date;
  log: Logger;
}

export function shippingEventConsumer(deps: ShippingConsumerDeps): ContextConsumer {
  return {
    ...shippingConsumer,
    handle: async (event) => {
      const command = shipmentCommandOf(event);
      let decision: ShipmentDecision | undefined;
      const outcome = await handleOnce(
        deps.db,
        shippingConsumer.name,
        event,
        async (tx) => {
          const now = deps.clock();
          const current = await deps.shipments.lockByOrderId(tx, event.aggregateId);
          decision = command.type === 'CreateShipment' ? decideCreate(current, command.request) : decideCancel(current);
          await deps.shipments.record(tx, decision, causedBy(event), now);
        },
        // The saga sends this consumer only some of an order's commands: versions have gaps.
        { ordering: 'monotonic' },
      );
      if (outcome === 'applied' && decision?.kind === 'ignored') {
        const fields = { orderId: event.aggregateId, command: command.type, eventId: event.eventId, reason: decision.reason };
        if (decision.expected) deps.log.info('command changes nothing', fields);
        else deps.log.warn('command refused: it does not fit the shipment', fields);
      }
    },
  };
}

export function shipmentCommandOf(event: EventEnvelope): ShipmentCommand {
  const orderId = (event.payload as { orderId?: unknown }).orderId;
  if (!isUuid(orderId) || orderId !== event.aggregateId) {
    throw new InvalidShipmentCommand(`${event.type} ${event.eventId}: payload.orderId must be the UUID of its aggregate (aggregateId)`);
  }
  switch (event.type) {
    case 'CreateShipment':
      return { type: 'CreateShipment', request: checkCreateShipment(event.payload as unknown as CreateShipment) };
    case 'CancelShipment':
      return { type: 'CancelShipment', orderId: (event.payload as unknown as CancelShipment).orderId };
    default:
      throw new InvalidShipmentCommand(`shipping does not handle ${event.type}`);
  }
}
