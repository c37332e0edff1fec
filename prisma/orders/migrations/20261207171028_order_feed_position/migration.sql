-- The projection's position of each change, what a resumed myOrderUpdates subscription replays
-- after (docs/decisions/0020). Hand-edited: existing entries are numbered in the order the
-- projector read their events, and each checkpoint continues from the last number.

-- AlterTable
ALTER TABLE "order_timeline" ADD COLUMN     "feed_position" BIGINT;

UPDATE "order_timeline" t SET "feed_position" = numbered.n
FROM (
    SELECT tl."order_id", tl."position",
           row_number() OVER (ORDER BY e."tx_id", e."global_position", tl."order_id", tl."position") AS n
    FROM "order_timeline" tl
    LEFT JOIN "order_events" e ON e."order_id" = tl."order_id" AND e."version" = tl."position"
) numbered
WHERE numbered."order_id" = t."order_id" AND numbered."position" = t."position";

ALTER TABLE "order_timeline" ALTER COLUMN "feed_position" SET NOT NULL;

-- AlterTable
ALTER TABLE "projection_checkpoints" ADD COLUMN     "feed_position" BIGINT NOT NULL DEFAULT 0;

UPDATE "projection_checkpoints" SET "feed_position" = (SELECT COALESCE(max("feed_position"), 0) FROM "order_timeline");

-- CreateIndex
CREATE UNIQUE INDEX "order_timeline_feed_position_key" ON "order_timeline"("feed_position");
