-- AlterEnum
ALTER TYPE "PaymentStatus" ADD VALUE 'REFUND_FAILED';

-- AlterTable
ALTER TABLE "payments" ADD COLUMN     "refund_failure_reason" VARCHAR(100);
