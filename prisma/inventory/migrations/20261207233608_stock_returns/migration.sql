-- CreateTable
CREATE TABLE "stock_return_replies" (
    "order_id" UUID NOT NULL,
    "type" VARCHAR(50) NOT NULL,
    "payload" JSONB NOT NULL,
    "version" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stock_return_replies_pkey" PRIMARY KEY ("order_id","type")
);

-- AddForeignKey
ALTER TABLE "stock_return_replies" ADD CONSTRAINT "stock_return_replies_order_id_fkey" FOREIGN KEY ("order_id") REFERENCES "stock_reservation_orders"("order_id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Written by hand (Prisma does not model CHECK constraints). Returns extend a line's states:
-- COMMITTED → RETURNED (held) → RESTOCKED | WRITTEN_OFF. Existing rows hold only the first three.
ALTER TABLE "stock_reservations" DROP CONSTRAINT "stock_reservations_status_known";
ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_status_known"
  CHECK ("status" IN ('RESERVED', 'RELEASED', 'COMMITTED', 'RETURNED', 'RESTOCKED', 'WRITTEN_OFF'));

ALTER TABLE "stock_return_replies" ADD CONSTRAINT "stock_return_replies_type_known"
  CHECK ("type" IN ('ReturnedStockReceived', 'StockRestocked', 'ReturnWrittenOff'));
ALTER TABLE "stock_return_replies" ADD CONSTRAINT "stock_return_replies_version_positive" CHECK ("version" >= 1);
