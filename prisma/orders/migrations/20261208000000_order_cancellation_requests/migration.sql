-- A customer's cancellation is a request the saga resolves (docs/decisions/0030): the summary
-- shows it and its outcome.

-- AlterTable
ALTER TABLE "order_summaries" ADD COLUMN     "cancellation" JSONB;
