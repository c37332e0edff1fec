-- AlterTable
ALTER TABLE "order_summaries" ADD COLUMN     "rejected_lines" JSONB NOT NULL DEFAULT '[]';

-- Hand-written: orders rejected before this column existed get their lines from their own
-- OrderRejected event, so the read models need no rebuild. Only where the summary has already
-- projected that event (version), so a summary never shows more than its version says; the
-- projector fills in the others when it reaches them.
UPDATE "order_summaries" s
SET "rejected_lines" = e.data -> 'lines'
FROM "order_events" e
WHERE e.order_id = s.order_id
  AND e.type = 'OrderRejected'
  AND e.version <= s.version
  AND jsonb_typeof(e.data -> 'lines') = 'array';
