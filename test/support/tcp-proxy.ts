/**
 * A TCP proxy in front of a real server, to make it unreachable on demand: `pause()` cuts every
 * open connection and refuses new ones (they are accepted and closed at once, as a failing
 * server would), `resume()` forwards again. Used to take PostgreSQL or NATS away from a client
 * without touching the server other tests share. `freeze()` stops forwarding without closing
 * anything, as a SIGSTOP'd server would; it counts connections and HTTP requests, so tests can
 * tell how often a server behind it was tried.
 */
import { connect, createServer, type Socket } from 'node:net';
import { Transform } from 'node:stream';

export interface TcpProxy {
  port: number;
  /** `host:port` of the proxy, for URLs. */
  address: string;
  pause(): void;
  /** Accepts connections but forwards nothing either way until `resume()`; bytes wait, nothing is closed. */
  freeze(): void;
  /**
   * Forwards the next `count` requests but cuts each connection as the server starts answering:
   * the server did the work, the client sees a reset and no answer. @default Infinity
   */
  cutReplies(count?: number): void;
  /** Forwards again (after `pause()`, `freeze()` or `cutReplies()`). */
  resume(): void;
  /** Connections accepted so far, refused ones (while paused) included. */
  readonly connections: number;
  /** HTTP requests that reached the server behind it so far (request lines forwarded). */
  readonly httpRequests: number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let paused = false;
  let frozen = false;
  let connections = 0;
  let httpRequests = 0;
  let repliesToCut = 0;
  const links = new Set<{ flow(): void; hold(): void }>();
  const open = new Set<Socket>();
  const track = (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  };
  const server = createServer((client) => {
    connections++;
    if (paused) return void client.destroy();
    const upstream = connect(target.port, target.host);
    track(client);
    track(upstream);
    // An HTTP client writes each request's head in one write, starting with its request line.
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (/^[A-Z]+ \S+ HTTP\/1\.[01]\r\n/.test(chunk.toString('latin1', 0, 256))) httpRequests++;
        done(null, chunk);
      },
    });
    counter.pipe(upstream);
    const replies = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (repliesToCut <= 0) return done(null, chunk);
        repliesToCut--;
        client.destroy();
        upstream.destroy();
        done();
      },
    });
    upstream.pipe(replies);
    const link = {
      flow() {
        client.pipe(counter);
        replies.pipe(client);
        upstream.resume();
      },
      hold() {
        client.unpipe(counter);
        replies.unpipe(client);
        client.pause();
        upstream.pause();
      },
    };
    links.add(link);
    client.once('close', () => links.delete(link));
    if (!frozen) link.flow();
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', cut).on('close', cut);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    port,
    address: `127.0.0.1:${port}`,
    pause() {
      paused = true;
      for (const socket of open) socket.destroy();
    },
    freeze() {
      frozen = true;
      for (const link of links) link.hold();
    },
    cutReplies(count = Infinity) {
      repliesToCut = count;
    },
    resume() {
      paused = false;
      repliesToCut = 0;
      if (!frozen) return;
      frozen = false;
      for (const link of links) link.flow();
    },
    get connections() {
      return connections;
    },
    get httpRequests() {
      return httpRequests;
    },
    async close() {
      paused = true;
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
