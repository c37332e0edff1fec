/**
 * The order saga's commands to inventory (contracts/order-saga.ts `inventorySagaCommands`):
 * ReserveStock, ReleaseStock, CommitStock, and for a return ReceiveReturnedStock, then
 * RestockReturn or WriteOffReturn. Each is applied in the inbox's transaction, so the command's
 * inbox row, the stock change and the reply in the outbox commit together; the reply goes back
 * to the orders context on the bus.
 */
import type { inventorySagaCommands } from '../../../platform/events/contracts/order-saga.ts';
import { causedBy, type EventEnvelope } from '../../../platform/events/envelope.ts';
import type { InventoryTransaction } from '../infrastructure/database.ts';
import { commitStock, receiveReturnedStock, releaseStock, reserveStock, restockReturn, writeOffReturn } from '../infrastructure/stock-reservations.ts';
import {
  commitStockCommand,
  receiveReturnedStockCommand,
  releaseStockCommand,
  reserveStockCommand,
  restockReturnCommand,
  writeOffReturnCommand,
} from '../domain/stock-reservation.ts';

export type StockCommandType = (typeof inventorySagaCommands)[number];

/**
 * The effect of a saga command, checked before any transaction opens: a malformed command
 * throws InvalidSagaCommand (retried, then parked as a dead letter).
 */
export function stockCommandEffect(event: EventEnvelope & { type: StockCommandType }): (tx: InventoryTransaction) => Promise<void> {
  const causation = causedBy(event);
  switch (event.type) {
    case 'ReserveStock': {
      const command = reserveStockCommand(event);
      return async (tx) => void (await reserveStock(tx, command, causation));
    }
    case 'ReleaseStock': {
      const command = releaseStockCommand(event);
      return async (tx) => void (await releaseStock(tx, command, causation));
    }
    case 'CommitStock': {
      const command = commitStockCommand(event);
      return async (tx) => void (await commitStock(tx, command, causation));
    }
    case 'ReceiveReturnedStock': {
      const command = receiveReturnedStockCommand(event);
      return async (tx) => void (await receiveReturnedStock(tx, command, causation));
    }
    case 'RestockReturn': {
      const command = restockReturnCommand(event);
      return async (tx) => void (await restockReturn(tx, command, causation));
    }
    case 'WriteOffReturn': {
      const command = writeOffReturnCommand(event);
      return async (tx) => void (await writeOffReturn(tx, command, causation));
    }
  }
}
