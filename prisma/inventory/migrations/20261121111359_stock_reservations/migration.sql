-- CreateTable
CREATE TABLE "stock_reservation_orders" (
    "order_id" UUID NOT NULL,
    "outcome_type" VARCHAR(50),
    "outcome_payload" JSONB,
    "outcome_version" INTEGER,
    "version" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stock_reservation_orders_pkey" PRIMARY KEY ("order_id")
);

-- CreateTable
CREATE TABLE "stock_reservations" (
    "order_id" UUID NOT NULL,
    "product_id" UUID NOT NULL,
    "quantity" INTEGER NOT NULL,
    "status" VARCHAR(20) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "stock_reservations_pkey" PRIMARY KEY ("order_id","product_id")
);

-- CreateIndex
CREATE INDEX "stock_reservations_product_id_idx" ON "stock_reservations"("product_id");

-- AddForeignKey
ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_order_id_fkey" FOREIGN KEY ("order_id") REFERENCES "stock_reservation_orders"("order_id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_product_id_fkey" FOREIGN KEY ("product_id") REFERENCES "stock_items"("product_id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Written by hand (Prisma does not model CHECK constraints). The conditional UPDATEs of the
-- repositories are what keep stock from going below zero; these make the database refuse it
-- too, whatever writes to it. Existing rows satisfy them: adjustments never took `available`
-- below zero and nothing reserved before this migration.
ALTER TABLE "stock_items" ADD CONSTRAINT "stock_items_available_not_negative" CHECK ("available" >= 0);
ALTER TABLE "stock_items" ADD CONSTRAINT "stock_items_reserved_not_negative" CHECK ("reserved" >= 0);

ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_quantity_positive" CHECK ("quantity" > 0);
ALTER TABLE "stock_reservations" ADD CONSTRAINT "stock_reservations_status_known" CHECK ("status" IN ('RESERVED', 'RELEASED', 'COMMITTED'));

ALTER TABLE "stock_reservation_orders" ADD CONSTRAINT "stock_reservation_orders_outcome_known" CHECK (
  ("outcome_type" IS NULL AND "outcome_payload" IS NULL AND "outcome_version" IS NULL)
  OR ("outcome_type" IN ('StockReserved', 'StockReservationRejected') AND "outcome_payload" IS NOT NULL AND "outcome_version" BETWEEN 1 AND "version")
);
ALTER TABLE "stock_reservation_orders" ADD CONSTRAINT "stock_reservation_orders_version_not_negative" CHECK ("version" >= 0);
