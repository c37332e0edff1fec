/** Shipments, their lines and their status trail in the shipping database. */
import DataLoader from 'dataloader';
import type { Prisma } from '../../../prisma/shipping/client/client.ts';
import { notFoundError } from '../../../platform/errors/domain-error.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { appendToOutbox } from '../../../platform/events/outbox.ts';
import { isUuid } from '../../../platform/ids.ts';
import { shipmentEventEnvelope } from '../domain/shipment-events.ts';
import { advance, type Shipment, type ShipmentDecision, type ShipmentStatus } from '../domain/shipment.ts';
import type { ShippingDatabase } from './database.ts';

export interface ShipmentStatusChange {
  status: ShipmentStatus;
  at: Date;
}

/** What GraphQL shows of a shipment. */
export interface ShipmentView extends Shipment {
  history: ShipmentStatusChange[];
}

type ShippingClient = ShippingDatabase | Prisma.TransactionClient;

export class ShipmentRepository {
  constructor(private readonly db: ShippingDatabase) {}

  /** By order id; one statement (history included) for any number of orders. */
  createLoader(): DataLoader<string, ShipmentView | null> {
    return new DataLoader(async (orderIds) => {
      // Malformed ids cannot have a shipment: they never reach SQL.
      const wanted = orderIds.filter(isUuid);
      const views = wanted.length === 0 ? [] : await selectViews(this.db, wanted);
      const byOrder = new Map(views.map((view) => [view.orderId, view]));
      return orderIds.map((id) => byOrder.get(id) ?? null);
    });
  }

  /**
   * The order's shipment, row-locked until `tx` ends: the saga's commands and the carrier's
   * moves of one shipment take turns, and take the lock before they write, so their events'
   * transaction order is their commit order.
   */
  async lockByOrderId(tx: Prisma.TransactionClient, orderId: string): Promise<Shipment | null> {
    const rows = await tx.$queryRaw<Shipment[]>`
      SELECT id::text, order_id::text AS "orderId", customer_id::text AS "customerId", carrier,
             tracking_number AS "trackingNumber", status::text AS status, version
      FROM shipments WHERE order_id = ${orderId}::uuid
      FOR UPDATE`;
    return rows[0] ?? null;
  }

  /** Writes a decision inside `tx`: the shipment's new state and status change, and its event. */
  async record(tx: Prisma.TransactionClient, decision: ShipmentDecision, causation: Causation, now: Date): Promise<void> {
    if (decision.kind === 'ignored') return;
    if (decision.kind === 'created') {
      const { shipment, address, lines } = decision;
      await tx.shipment.create({
        data: {
          ...shipment,
          recipientName: address.name,
          addressLine1: address.line1,
          addressLine2: address.line2 ?? null,
          city: address.city,
          postalCode: address.postalCode,
          country: address.country,
          lines: { createMany: { data: lines.map(({ productId, quantity }) => ({ productId, quantity })) } },
          history: { create: { version: shipment.version, status: shipment.status, at: now } },
        },
      });
    } else if (decision.kind === 'changed') {
      const { id, status, version } = decision.shipment;
      await tx.shipment.update({ where: { id }, data: { status, version } });
      await tx.shipmentStatusChange.create({ data: { shipmentId: id, version, status, at: now } });
    }
    await appendToOutbox(tx, [shipmentEventEnvelope(decision.reply, causation, now)]);
  }

  /** The carrier's move: NOT_FOUND without a shipment, CONFLICT unless it is the next step. */
  advance(orderId: string, to: ShipmentStatus, causation: Causation, now: Date): Promise<ShipmentView> {
    return this.db.$transaction(async (tx) => {
      const shipment = await this.lockByOrderId(tx, orderId);
      if (!shipment) throw notFoundError('This order has no shipment');
      await this.record(tx, advance(shipment, to), causation, now);
      return (await selectViews(tx, [orderId]))[0]!;
    });
  }
}

/** Shipments with their history, in ONE statement (a correlated JSON aggregate per shipment). */
async function selectViews(client: ShippingClient, orderIds: string[]): Promise<ShipmentView[]> {
  const rows = await client.$queryRaw<(Shipment & { history: { status: ShipmentStatus; at: string }[] })[]>`
    SELECT s.id::text, s.order_id::text AS "orderId", s.customer_id::text AS "customerId", s.carrier,
           s.tracking_number AS "trackingNumber", s.status::text AS status, s.version,
           COALESCE((SELECT json_agg(json_build_object('status', h.status, 'at', h.at) ORDER BY h.version)
                     FROM shipment_status_changes h WHERE h.shipment_id = s.id), '[]'::json) AS history
    FROM shipments s
    WHERE s.order_id = ANY(${orderIds}::uuid[])`;
  return rows.map((row) => ({ ...row, history: row.history.map((change) => ({ status: change.status, at: new Date(change.at) })) }));
}
