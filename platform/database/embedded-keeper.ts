/**
 * The parent of the embedded PostgreSQL server (started by embedded.ts, never by hand):
 *   node --import tsx embedded-keeper.ts '<json: { command, args, uid?, gid? }>'
 *
 * Why a process of its own: the server must be out of the terminal's process group, or Ctrl-C
 * reaches it together with `npm start` and it stops first, under the services still using it. Out
 * of that group, nothing would stop it when its starter is SIGKILLed; this keeper notices (the IPC
 * channel closes, whatever killed the starter) and stops it. Its starter asks it to stop with
 * SIGTERM; it stops the server with SIGINT, PostgreSQL's "fast" shutdown (clients disconnected,
 * checkpoint written, nothing lost). It exits with the server, with the server's exit code, after
 * telling its starter how the server ended.
 */
import { spawn } from 'node:child_process';

interface KeeperConfig {
  command: string;
  args: string[];
  /** Run as root, the server runs as this unprivileged user and group. */
  uid?: number;
  gid?: number;
}

const config = JSON.parse(process.argv[2] ?? '') as KeeperConfig;
// Its output goes straight to the keeper's (the starter reads it for "ready to accept connections").
const server = spawn(config.command, config.args, {
  stdio: ['ignore', 'inherit', 'inherit'],
  ...(config.uid !== undefined ? { uid: config.uid, gid: config.gid } : {}),
});
server.on('error', (error) => {
  process.stderr.write(`could not start ${config.command}: ${error.message}\n`);
  process.exit(1);
});
server.once('exit', (code, signal) => {
  const exitCode = code ?? 1;
  // Its starter says how the server ended ("exited (signal SIGKILL)"), not how the keeper did.
  if (process.connected) process.send!({ exited: `exited (${signal ? `signal ${signal}` : `code ${code}`})` }, () => process.exit(exitCode));
  else process.exit(exitCode);
});
if (server.pid !== undefined) process.send?.({ pid: server.pid });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  if (server.exitCode === null && server.signalCode === null) server.kill('SIGINT');
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('SIGHUP', stop);
process.on('disconnect', stop);
