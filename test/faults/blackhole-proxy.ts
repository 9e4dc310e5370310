/**
 * A TCP proxy on a free loopback port in front of a store, that can stop
 * forwarding: a network black hole between one worker and the store. While
 * it is closed, bytes wait in both directions and new connections are
 * accepted but not connected onwards, so the worker sees a store that has
 * gone silent, as when a link drops packets; nothing is refused or reset.
 * When it opens again, what waited is delivered (as TCP retransmission
 * would), late. It can also hold only the connections made from now on,
 * while the open ones keep flowing.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class BlackholeProxy {
  readonly port: number;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly pending: (() => void)[] = [];
  private closed = false;
  private holdingNew = false;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
  }

  /** Starts a proxy that forwards to `target` on 127.0.0.1. */
  static async start(targetPort: number): Promise<BlackholeProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy has no port');
    const proxy = new BlackholeProxy(server, address.port);
    server.on('connection', (client) => {
      proxy.accept(client, targetPort);
    });
    return proxy;
  }

  /** Stops forwarding, in both directions, on every connection (old and new). */
  blackhole(): void {
    this.closed = true;
    for (const socket of this.sockets) socket.pause();
  }

  /** Holds new connections (accepted, not connected onwards); the open ones keep flowing. */
  holdNewConnections(): void {
    this.holdingNew = true;
  }

  /** Connections accepted but not connected onwards yet. */
  get held(): number {
    return this.pending.length;
  }

  /** Forwards again; what waited is delivered. */
  heal(): void {
    this.closed = false;
    this.holdingNew = false;
    for (const socket of this.sockets) socket.resume();
    for (const connect of this.pending.splice(0)) connect();
  }

  /** Closes the proxy and every connection through it. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, targetPort: number): void {
    this.track(client);
    client.pause();
    const connect = (): void => {
      if (client.destroyed) return;
      const upstream = createConnection(targetPort, '127.0.0.1');
      this.track(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      // A connection dies as a whole, as a real one would.
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      // pipe() resumes its source; a black hole that began meanwhile holds both again.
      if (this.closed) {
        client.pause();
        upstream.pause();
      }
    };
    if (this.closed || this.holdingNew) this.pending.push(connect);
    else connect();
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.sockets.delete(socket);
      for (const other of this.sockets) if (other.destroyed) this.sockets.delete(other);
    });
  }
}
