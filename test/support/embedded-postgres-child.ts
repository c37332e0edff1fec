/**
 * Test-only: starts the embedded PostgreSQL the way `npm start` does, from a process of its own,
 * so a test can Ctrl-C or SIGKILL that process and see what becomes of the server.
 *
 *   node --import tsx test/support/embedded-postgres-child.ts <dataDir> <port>
 *
 * Prints `ready <server pid>` once the server accepts connections, and `got SIGINT` on each
 * SIGINT, which it otherwise ignores (the test judges the server, not this process).
 */
import { startEmbeddedPostgres } from '../../platform/database/embedded.ts';

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) throw new Error('usage: embedded-postgres-child.ts <dataDir> <port>');
process.on('SIGINT', () => console.log('got SIGINT'));
const running = await startEmbeddedPostgres({ dataDir, port: Number(port) });
console.log(`ready ${running.pid}`);
