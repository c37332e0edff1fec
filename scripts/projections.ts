/**
 * Operating the read models (`npm run projections -- <command>`):
 *   rebuild orders    empties the orders read models (order summaries, timelines) and replays
 *                     every order event into them; a running projector carries on from there
 * It finds the platform as `npm run events` does (`locatePlatform`): ORDERS_DATABASE_URL, else
 * DATABASE_URL (see platform/config.ts), else the runtime file of a running `npm start`.
 */
import { locatePlatform } from '../platform/runtime-file.ts';
import { OrderProjector } from '../subgraphs/orders/projections/projector.ts';

const usage = 'usage: npm run projections -- rebuild orders';

async function main(): Promise<number> {
  const [command, context, ...rest] = process.argv.slice(2);
  if (command !== 'rebuild' || context !== 'orders' || rest.length > 0) {
    console.error(usage);
    return 2;
  }
  const databaseUrl = locatePlatform(['orders']).databaseUrls.orders;
  const projector = new OrderProjector({ databaseUrl });
  try {
    const started = Date.now();
    const { scanned, orderIds } = await projector.rebuild();
    console.log(`orders: replayed ${scanned} events into the read models of ${orderIds.length} orders in ${Date.now() - started} ms`);
    return 0;
  } finally {
    await projector.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
