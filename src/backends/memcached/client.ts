/**
 * A small memcached meta-protocol client: a few pipelined connections per
 * server, a timeout on every request, reconnection with exponential
 * backoff, and rendezvous hashing to pick a key's server.
 *
 * Why hand-written: no npm client fits locks. memjs speaks the binary
 * protocol without CAS; `memcached` is callback-only, unmaintained, and
 * re-routes keys to another server when one fails (two lock holders once it
 * is back); memcache-client sends each command to a random server when
 * several are given. Locks need CAS, `add`, `incr` with auto-create, and a
 * key that stays on its server.
 *
 * A key is never moved to another server when its own is down: requests for
 * it fail with the server's address instead (see `memcached-backend.ts`).
 * @module
 */
import { performance } from 'node:perf_hooks';
import type { HostPort } from '../../config.js';
import { Connection, MemcachedServerError } from './connection.js';
import { Rendezvous } from './keys.js';
import type { MetaResponse, Request, Response } from './protocol.js';

/** Options of {@link MemcachedClient}. */
export interface MemcachedClientOptions {
  /** The pool; every process sharing locks must list the same servers. */
  readonly servers: readonly HostPort[];
  /**
   * Connections per server; requests are pipelined on each.
   * @default 2
   */
  readonly connectionsPerServer?: number;
  /**
   * ms to wait for the replies of one batch of requests; then the
   * connection is dropped and the batch fails.
   * @default 2_000
   */
  readonly requestTimeout?: number;
  /**
   * ms to wait for a TCP connection.
   * @default 1_000
   */
  readonly connectTimeout?: number;
}

const DEFAULT_CONNECTIONS = 2;
const DEFAULT_REQUEST_TIMEOUT = 2_000;
const DEFAULT_CONNECT_TIMEOUT = 1_000;
/** First wait after a failed connection attempt; doubles up to {@link MAX_BACKOFF}. */
const FIRST_BACKOFF = 50;
const MAX_BACKOFF = 1_000;

/** One meta reply per request. */
export type Replies<R extends readonly unknown[]> = { -readonly [K in keyof R]: MetaResponse };

/** One server of the pool and its connections. */
export class ServerPool {
  /** `memcached://host:port`. */
  readonly address: string;
  /** `host:port`, the server's identity for hashing. */
  readonly id: string;
  private readonly server: HostPort;
  private readonly slots: (Connection | Promise<Connection> | undefined)[];
  private readonly connectTimeout: number;
  private next = 0;
  private failures = 0;
  /** performance.now() before which no new connection is attempted. */
  private retryAt = 0;
  private lastError: MemcachedServerError | undefined;
  private closed = false;

  constructor(
    server: HostPort,
    connections: number,
    connectTimeout: number,
    private readonly requestTimeout: number,
  ) {
    this.server = server;
    const host = server.host.includes(':') ? `[${server.host}]` : server.host;
    this.id = `${host}:${String(server.port)}`;
    this.address = `memcached://${this.id}`;
    this.slots = Array.from({ length: connections }, () => undefined);
    this.connectTimeout = connectTimeout;
  }

  /** A usable connection, opened if needed; fails fast while backing off after a failure. */
  async connection(): Promise<Connection> {
    if (this.closed) throw new MemcachedServerError(this.address, 'the client was closed');
    const index = this.next;
    this.next = (this.next + 1) % this.slots.length;
    const slot = this.slots[index];
    if (slot instanceof Connection) {
      if (slot.usable) return slot;
    } else if (slot !== undefined) {
      return slot;
    }
    const wait = this.retryAt - performance.now();
    if (wait > 0 && this.lastError !== undefined) {
      throw new MemcachedServerError(
        this.address,
        `unreachable (${this.lastError.reason}); next attempt in ${String(Math.ceil(wait))} ms`,
        { cause: this.lastError },
      );
    }
    const opening = this.open(index);
    this.slots[index] = opening;
    return opening;
  }

  close(): void {
    this.closed = true;
    // A connection still opening closes itself when it sees `closed`.
    for (const [index, slot] of this.slots.entries()) {
      if (slot instanceof Connection) slot.close();
      this.slots[index] = undefined;
    }
  }

  private async open(index: number): Promise<Connection> {
    try {
      const connection = await Connection.open({
        host: this.server.host,
        port: this.server.port,
        address: this.address,
        connectTimeout: this.connectTimeout,
        requestTimeout: this.requestTimeout,
      });
      this.failures = 0;
      this.lastError = undefined;
      if (this.closed) connection.close();
      else this.slots[index] = connection;
      return connection;
    } catch (error) {
      this.slots[index] = undefined;
      this.failures += 1;
      this.retryAt =
        performance.now() + Math.min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (this.failures - 1));
      this.lastError =
        error instanceof MemcachedServerError
          ? error
          : new MemcachedServerError(this.address, String(error), { cause: error });
      throw this.lastError;
    }
  }
}

/** A pool of memcached servers, with a key-to-server mapping that never fails over. */
export class MemcachedClient {
  readonly servers: readonly ServerPool[];
  private readonly ring: Rendezvous<ServerPool>;
  private readonly requestTimeout: number;

  constructor(options: MemcachedClientOptions) {
    const connections = options.connectionsPerServer ?? DEFAULT_CONNECTIONS;
    const connectTimeout = options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
    this.requestTimeout = options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT;
    const seen = new Map<string, ServerPool>();
    for (const server of options.servers) {
      const pool = new ServerPool(server, connections, connectTimeout, this.requestTimeout);
      // A server listed twice would get twice the keys on one connection pool.
      if (!seen.has(pool.id)) seen.set(pool.id, pool);
    }
    this.servers = [...seen.values()];
    this.ring = new Rendezvous(this.servers, (server) => server.id);
  }

  /** The server that owns `routingKey`. */
  serverFor(routingKey: string): ServerPool {
    return this.ring.pick(routingKey);
  }

  /**
   * Sends `requests` to `server` in one write, on one connection (so they
   * run in this order), and resolves every reply, error replies included.
   * Rejects with {@link MemcachedServerError} when the server cannot be
   * reached or does not answer within the request timeout.
   */
  async send(server: ServerPool, requests: readonly Request[]): Promise<Response[]> {
    const connection = await server.connection();
    return connection.send(requests);
  }

  /**
   * Like {@link send} for meta requests, with one reply per request (typed
   * as a tuple of the same length); an error reply rejects with
   * {@link MemcachedServerError}.
   */
  async meta<const R extends readonly Request[]>(
    server: ServerPool,
    requests: R,
  ): Promise<Replies<R>> {
    const replies = await this.send(server, requests);
    const checked = replies.map((reply, index) => {
      if (reply.kind === 'meta') return reply;
      const what = requests[index]?.command ?? '?';
      if (reply.kind === 'error' && reply.type === 'ERROR') {
        // Servers before 1.6 answer a bare ERROR to every meta command.
        throw new MemcachedServerError(
          server.address,
          `${what} failed: ERROR (is it memcached 1.6 or later? disref needs the meta protocol)`,
        );
      }
      const request = requests[index];
      const key = request !== undefined && 'key' in request ? request.key : '?';
      if (reply.kind === 'error' && describe(reply).includes('non-numeric')) {
        // An arithmetic on an item another program wrote (disref's counters are numbers).
        throw new MemcachedServerError(
          server.address,
          `${what} ${key} failed: ${describe(reply)}; the item holds a value disref did not write: ` +
            'delete it, or give disref a namespace of its own',
        );
      }
      throw new MemcachedServerError(server.address, `${what} failed: ${describe(reply)}`);
    });
    // A connection resolves exactly one reply per request, in order.
    return checked as unknown as Replies<R>;
  }

  /** `stats` of one server, as name -> value. */
  async stats(server: ServerPool): Promise<ReadonlyMap<string, string>> {
    const [reply] = await this.send(server, [{ command: 'stats' }]);
    if (reply?.kind !== 'stats') {
      throw new MemcachedServerError(server.address, `stats failed: ${describe(reply)}`);
    }
    return reply.stats;
  }

  /** The server's version string, e.g. `1.6.18`. */
  async version(server: ServerPool): Promise<string> {
    const [reply] = await this.send(server, [{ command: 'version' }]);
    if (reply?.kind !== 'version') {
      throw new MemcachedServerError(server.address, `version failed: ${describe(reply)}`);
    }
    return reply.version;
  }

  /** Drops every item on every server (tests; never used by locks). */
  async flushAll(): Promise<void> {
    await Promise.all(
      this.servers.map(async (server) => {
        const [reply] = await this.send(server, [{ command: 'flush_all' }]);
        if (reply?.kind !== 'ok') {
          throw new MemcachedServerError(server.address, `flush_all failed: ${describe(reply)}`);
        }
      }),
    );
  }

  /** Closes every connection; requests in flight fail. */
  close(): void {
    for (const server of this.servers) server.close();
  }
}

function describe(reply: Response | undefined): string {
  if (reply === undefined) return 'no reply';
  if (reply.kind === 'error') return `${reply.type} ${reply.message}`.trim();
  return `unexpected ${reply.kind === 'meta' ? reply.status : reply.kind} reply`;
}
