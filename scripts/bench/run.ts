/** `npm run bench -- <name>`: runs one benchmark and prints its figures with their baseline. */
const benches: Record<string, () => Promise<{ run(args: string[]): Promise<void> }>> = {
  abuse: () => import('./abuse.ts'),
  chaos: () => import('./chaos.ts'),
  events: () => import('./events.ts'),
  orders: () => import('./orders.ts'),
  subscriptions: () => import('./subscriptions.ts'),
};

const [name, ...args] = process.argv.slice(2);
const load = name ? benches[name] : undefined;
if (!load) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join('|')}> [options]`);
  process.exit(1);
}
(await load()).run(args).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
