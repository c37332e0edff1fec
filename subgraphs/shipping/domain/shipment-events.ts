/** The events shipping publishes, versioned per shipment (aggregateId = orderId). */
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';
import type { ShipmentReply } from './shipment.ts';

export function shipmentEventEnvelope(reply: ShipmentReply, causation: Causation, now: Date): EventEnvelope<ShipmentReply['payload']> {
  return createEnvelope(
    'shipping',
    { type: reply.type, aggregateType: 'Shipment', aggregateId: reply.payload.orderId, aggregateVersion: reply.version, payload: reply.payload },
    causation,
    now,
  );
}
