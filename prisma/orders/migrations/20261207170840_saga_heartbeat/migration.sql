-- CreateTable
CREATE TABLE "order_saga_heartbeat" (
    "id" INTEGER NOT NULL,
    "ticked_at" TIMESTAMPTZ(3) NOT NULL,
    "previous_tick_at" TIMESTAMPTZ(3),

    CONSTRAINT "order_saga_heartbeat_pkey" PRIMARY KEY ("id")
);

-- One row only: every sweeper of every replica ticks the same heartbeat (hand-written; Prisma
-- does not model CHECK constraints).
ALTER TABLE "order_saga_heartbeat" ADD CONSTRAINT "order_saga_heartbeat_single_row" CHECK ("id" = 1);
