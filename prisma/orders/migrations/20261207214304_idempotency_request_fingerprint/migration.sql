-- The fingerprint of the request that claimed an idempotency key (docs/decisions/0006). Keys
-- claimed before it existed keep NULL: their retries return their order as before.

-- AlterTable
ALTER TABLE "order_idempotency" ADD COLUMN     "request_fingerprint" CHAR(64);
