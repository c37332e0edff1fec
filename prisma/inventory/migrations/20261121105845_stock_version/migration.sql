-- AlterTable
ALTER TABLE "stock_items" ADD COLUMN     "version" INTEGER NOT NULL DEFAULT 0;
