-- CreateTable
CREATE TABLE "order_events" (
    "global_position" BIGSERIAL NOT NULL,
    "order_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "type" VARCHAR(100) NOT NULL,
    "data" JSONB NOT NULL,
    "event_id" UUID NOT NULL,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "occurred_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "tx_id" xid8 NOT NULL DEFAULT pg_current_xact_id(),

    CONSTRAINT "order_events_pkey" PRIMARY KEY ("global_position")
);

-- CreateTable
CREATE TABLE "order_snapshots" (
    "order_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "state" JSONB NOT NULL,
    "taken_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "order_snapshots_pkey" PRIMARY KEY ("order_id")
);

-- CreateTable
CREATE TABLE "order_idempotency" (
    "customer_id" UUID NOT NULL,
    "idempotency_key" VARCHAR(100) NOT NULL,
    "order_id" UUID NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "order_idempotency_pkey" PRIMARY KEY ("customer_id","idempotency_key")
);

-- CreateTable
CREATE TABLE "product_prices" (
    "product_id" UUID NOT NULL,
    "price" INTEGER,
    "currency" VARCHAR(3),
    "name" VARCHAR(200),
    "discontinued" BOOLEAN NOT NULL DEFAULT false,
    "version" INTEGER NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "product_prices_pkey" PRIMARY KEY ("product_id")
);

-- CreateTable
CREATE TABLE "order_summaries" (
    "order_id" UUID NOT NULL,
    "customer_id" UUID NOT NULL,
    "status" VARCHAR(20) NOT NULL,
    "reason" VARCHAR(40),
    "total" INTEGER NOT NULL,
    "currency" VARCHAR(3) NOT NULL,
    "item_count" INTEGER NOT NULL,
    "items" JSONB NOT NULL,
    "version" INTEGER NOT NULL,
    "placed_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "order_summaries_pkey" PRIMARY KEY ("order_id")
);

-- CreateTable
CREATE TABLE "order_timeline" (
    "order_id" UUID NOT NULL,
    "position" INTEGER NOT NULL,
    "status" VARCHAR(20) NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "order_timeline_pkey" PRIMARY KEY ("order_id","position")
);

-- CreateTable
CREATE TABLE "projection_checkpoints" (
    "name" VARCHAR(100) NOT NULL,
    "position" BIGINT NOT NULL DEFAULT 0,
    "tx_id" xid8 NOT NULL DEFAULT '0'::xid8,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "projection_checkpoints_pkey" PRIMARY KEY ("name")
);

-- CreateTable
CREATE TABLE "order_sagas" (
    "order_id" UUID NOT NULL,
    "status" TEXT NOT NULL,
    "step" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "deadline_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "version" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "order_sagas_pkey" PRIMARY KEY ("order_id")
);

-- CreateTable
CREATE TABLE "outbox_events" (
    "id" BIGSERIAL NOT NULL,
    "event_id" UUID NOT NULL,
    "tx_id" xid8 NOT NULL DEFAULT pg_current_xact_id(),
    "subject" VARCHAR(255) NOT NULL,
    "envelope" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "published_at" TIMESTAMPTZ(3),

    CONSTRAINT "outbox_events_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "inbox_events" (
    "consumer" VARCHAR(100) NOT NULL,
    "event_id" UUID NOT NULL,
    "processed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "inbox_events_pkey" PRIMARY KEY ("consumer","event_id")
);

-- CreateTable
CREATE TABLE "consumer_positions" (
    "consumer" VARCHAR(100) NOT NULL,
    "aggregate_type" VARCHAR(100) NOT NULL,
    "aggregate_id" VARCHAR(100) NOT NULL,
    "last_applied_version" INTEGER NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "consumer_positions_pkey" PRIMARY KEY ("consumer","aggregate_type","aggregate_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "order_events_event_id_key" ON "order_events"("event_id");

-- CreateIndex
CREATE INDEX "order_events_tx_id_global_position_idx" ON "order_events"("tx_id", "global_position");

-- CreateIndex
CREATE UNIQUE INDEX "order_events_order_id_version_key" ON "order_events"("order_id", "version");

-- CreateIndex
CREATE INDEX "order_summaries_customer_id_placed_at_order_id_idx" ON "order_summaries"("customer_id", "placed_at" DESC, "order_id");

-- CreateIndex
CREATE UNIQUE INDEX "outbox_events_event_id_key" ON "outbox_events"("event_id");

-- CreateIndex
CREATE INDEX "outbox_events_published_at_tx_id_id_idx" ON "outbox_events"("published_at", "tx_id", "id");

-- Written by hand (Prisma's migration engine models neither triggers nor partial indexes).

-- The saga's deadline scan reads only sagas still running.
CREATE INDEX "order_sagas_deadline_at_running_idx" ON "order_sagas"("deadline_at") WHERE "status" = 'RUNNING';

-- Wakes the outbox relay, which LISTENs on "outbox_events", as soon as a transaction that wrote
-- events commits. PostgreSQL delivers notifications only at commit (none on rollback) and folds
-- identical ones of a transaction into one, so a statement-level trigger costs one notification
-- per writing transaction.
CREATE FUNCTION "outbox_events_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER "outbox_events_notify" AFTER INSERT ON "outbox_events"
  FOR EACH STATEMENT EXECUTE FUNCTION "outbox_events_notify"();

-- Wakes the order projector, which LISTENs on "order_events", when a transaction that appended
-- order events commits (same folding as above).
CREATE FUNCTION "order_events_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('order_events', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER "order_events_notify" AFTER INSERT ON "order_events"
  FOR EACH STATEMENT EXECUTE FUNCTION "order_events_notify"();
