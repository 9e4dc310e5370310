/**
 * The Redis client adapter: the few commands the backend sends (EVALSHA,
 * EVAL, SCAN, SUBSCRIBE, UNSUBSCRIBE, QUIT), over either client users have:
 * ioredis (created by disref from a URL, loaded lazily, or passed in) or
 * node-redis (`@redis/client`, only when passed in; never imported, so it
 * stays an optional peer dependency). Redis Cluster (ioredis `Cluster`) is
 * in `cluster-client.ts`.
 * @module
 */
import { isIP } from 'node:net';
import type { RedisOptions } from 'ioredis';
import { redactUrl, type StoreAddress } from '../../config.js';
import { BackendError, InvalidArgumentError } from '../../errors.js';
import type { IoredisClusterClient } from './cluster-client.js';
import type { PublishCommand } from './scripts.js';

/** What the backend needs from a connection; one implementation per client library. */
export interface RedisConnection {
  /**
   * How the scripts wake waiters: PUBLISH, or SPUBLISH on a Redis 7+
   * cluster (the subscriber then uses SSUBSCRIBE to match).
   */
  readonly publish: PublishCommand;
  /**
   * ms disref gives a command on a connection it created before failing it
   * (the backend's `operationTimeout` bounds it too); undefined for clients
   * passed in, whose own timeouts are unknown.
   */
  readonly commandTimeout?: number;
  /** EVALSHA; rejects with an error whose message starts with `NOSCRIPT` when the script is not cached. */
  evalsha(sha: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /** EVAL with the full script text (the server caches it). */
  eval(script: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /** One SCAN step: `[next cursor ('0' when done), keys matching the glob pattern]`. */
  scan(cursor: string, pattern: string, count: number): Promise<[string, string[]]>;
  /**
   * A second connection for wake-ups, owned by the caller: a connection
   * in subscriber mode can run nothing else.
   */
  openSubscriber(): RedisSubscriber;
  /** Closes the connection if disref opened it; a client passed in is left alone. */
  close(): Promise<void>;
  /** Why the last connection attempt failed, for clients disref created (it listens for errors). */
  lastConnectionError(): Error | undefined;
}

/** A connection in subscriber mode. */
export interface RedisSubscriber {
  /** Resolves once the server acknowledged SUBSCRIBE. */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  close(): Promise<void>;
}

/** The part of an ioredis (v5, v6) client disref uses. */
export interface IoredisClient {
  readonly status: string;
  evalsha(sha: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  eval(script: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  scan(
    cursor: string,
    matchToken: 'MATCH',
    pattern: string,
    countToken: 'COUNT',
    count: number,
  ): Promise<[string, string[]]>;
  duplicate(): IoredisSubscriberClient;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/** The part of a duplicated ioredis client used for SUBSCRIBE. */
export interface IoredisSubscriberClient {
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  on(event: 'message', listener: (channel: string, message: string) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/** The part of a node-redis (`@redis/client` v4 to v6) client disref uses. */
export interface NodeRedisClient {
  readonly isOpen: boolean;
  sendCommand(args: string[]): Promise<unknown>;
  duplicate(): NodeRedisSubscriberClient;
}

/** The part of a duplicated node-redis client used for SUBSCRIBE. */
export interface NodeRedisSubscriberClient {
  connect(): Promise<unknown>;
  subscribe(
    channel: string,
    listener: (message: string, channel: string) => unknown,
  ): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  /** node-redis v5+; `quit()` in v4. */
  close?: () => Promise<unknown>;
  quit?: () => Promise<unknown>;
  /** node-redis v5+; `disconnect()` in v4. */
  destroy?: () => void;
  disconnect?: () => Promise<unknown>;
}

/**
 * A Redis client you pass to `connect({ redis })`: an ioredis `Redis`
 * instance, an ioredis `Cluster`, or a connected node-redis
 * (`@redis/client`) client. disref sends its scripts through it, opens one
 * duplicate for wake-ups (closed by `disref.close()`), and never closes the
 * client itself.
 */
export type RedisClientLike = IoredisClient | IoredisClusterClient | NodeRedisClient;

/** How long disref waits for a TCP (and TLS) connection to a server, in ms. */
export const CONNECT_TIMEOUT = 3_000;
/** How long one command of a client disref created may take, in ms. */
export const COMMAND_TIMEOUT = 3_000;
/** Longest a graceful QUIT may take on close before the socket is dropped. */
const QUIT_TIMEOUT = 1_000;

type RedisUrlAddress = Extract<StoreAddress, { scheme: 'redis' | 'rediss' }>;

/** The address of a URL, for errors: scheme, host, port and database, never credentials. */
export function describeAddress(address: RedisUrlAddress): string {
  const host = address.server.host.includes(':') ? `[${address.server.host}]` : address.server.host;
  const database = address.database === 0 ? '' : `/${String(address.database)}`;
  return `${address.scheme}://${host}:${String(address.server.port)}${database}`;
}

/**
 * Creates an ioredis client for a URL, with bounds so that an unreachable
 * server fails every command within seconds instead of queueing it forever.
 */
export async function createIoredisConnection(
  address: RedisUrlAddress,
  clientName?: string,
): Promise<RedisConnection> {
  let Redis: typeof import('ioredis').Redis;
  try {
    // Loaded only when a redis:// URL is used, so memory-only users never load it.
    ({ Redis } = await import('ioredis'));
  } catch (error) {
    throw new BackendError(
      describeAddress(address),
      'the ioredis package could not be loaded; install it with `npm install ioredis`',
      { cause: error },
    );
  }
  const options: RedisOptions = {
    host: address.server.host,
    port: address.server.port,
    username: address.username,
    password: address.password,
    db: address.database,
    connectTimeout: CONNECT_TIMEOUT,
    // No ioredis commandTimeout: it arms a timer per command; the backend bounds each
    // operation by COMMAND_TIMEOUT with one timer for all (deadlines.ts).
    ...(clientName === undefined ? {} : { connectionName: clientName }),
    // Commands sent while disconnected wait for one reconnection, then fail.
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    lazyConnect: true,
    // SNI takes a host name only; Node warns when given an IP address.
    ...(address.scheme === 'rediss'
      ? { tls: isIP(address.server.host) === 0 ? { servername: address.server.host } : {} }
      : {}),
  };
  const client = new Redis(options);
  // Failures reach callers through their commands; without a listener ioredis logs each one.
  // The last one is kept: a command that gave up says only that it was not connected.
  let lastError: Error | undefined;
  client.on('error', (error: Error) => {
    lastError = error;
  });
  client.on('ready', () => {
    lastError = undefined;
  });
  return {
    ...ioredisConnection(client, { owned: true }),
    commandTimeout: COMMAND_TIMEOUT,
    lastConnectionError: () => lastError,
  };
}

/**
 * The name disref gives the connections it opens (CLIENT SETNAME), so that
 * `CLIENT LIST` shows which connections serve which namespace: `disref:` and
 * the namespace, with the characters Redis refuses in a name (anything but
 * printable ASCII, spaces included) as `?`.
 */
export function clientNameFor(namespace: string): string {
  return `disref:${namespace.replace(/[^!-~]/gu, '?')}`;
}

/**
 * Wraps a single-server client passed to `connect({ redis })`. Throws
 * `InvalidArgumentError` for anything that is not an ioredis or node-redis
 * client, and for cluster clients (an ioredis `Cluster` goes through
 * `connectionForCluster` in cluster-client.ts; node-redis cluster clients
 * are not supported).
 */
export function connectionForClient(
  client: unknown,
  argument: string,
): { connection: RedisConnection; address: string } {
  if (typeof client !== 'object' || client === null) {
    throw new InvalidArgumentError(argument, 'an ioredis or node-redis client', client);
  }
  const candidate = client as Record<string, unknown>;
  if (candidate.isCluster === true) {
    throw new InvalidArgumentError(
      argument,
      'a single-server Redis client here; pass an ioredis Cluster to connect({ redis }) itself',
      'an ioredis Cluster',
    );
  }
  if (typeof candidate.getMasters === 'function' || typeof candidate.getSlotMaster === 'function') {
    throw new InvalidArgumentError(
      argument,
      'an ioredis `Cluster` for Redis Cluster (node-redis cluster clients are not supported)',
      'a node-redis cluster client',
    );
  }
  if (
    typeof candidate.sendCommand === 'function' &&
    typeof candidate.isOpen === 'boolean' &&
    typeof candidate.duplicate === 'function'
  ) {
    return {
      connection: nodeRedisConnection(client as NodeRedisClient),
      address: nodeRedisAddress(candidate.options),
    };
  }
  if (
    typeof candidate.evalsha === 'function' &&
    typeof candidate.duplicate === 'function' &&
    typeof candidate.status === 'string'
  ) {
    return {
      connection: ioredisConnection(client as IoredisClient, { owned: false }),
      address: ioredisAddress(candidate.options),
    };
  }
  throw new InvalidArgumentError(
    argument,
    'an ioredis `Redis` instance or a connected node-redis (`@redis/client`) client',
    client,
  );
}

function ioredisConnection(client: IoredisClient, { owned }: { owned: boolean }): RedisConnection {
  return {
    publish: 'PUBLISH',
    evalsha: (sha, keys, args) => client.evalsha(sha, keys.length, ...keys, ...args),
    eval: (script, keys, args) => client.eval(script, keys.length, ...keys, ...args),
    scan: (cursor, pattern, count) => client.scan(cursor, 'MATCH', pattern, 'COUNT', count),
    openSubscriber: () => {
      const subscriber = client.duplicate();
      subscriber.on('error', () => undefined);
      const handlers = new Map<string, (message: string) => void>();
      subscriber.on('message', (channel, message) => {
        handlers.get(channel)?.(message);
      });
      return {
        subscribe: async (channel, onMessage) => {
          handlers.set(channel, onMessage);
          await subscriber.subscribe(channel);
        },
        unsubscribe: async (channel) => {
          handlers.delete(channel);
          await subscriber.unsubscribe(channel);
        },
        close: () => quitIoredis(subscriber),
      };
    },
    close: () => (owned ? quitIoredis(client) : Promise.resolve()),
    lastConnectionError: () => undefined,
  };
}

/** Quits an ioredis client (or Cluster) gracefully, then drops its sockets. */
export async function quitIoredis(client: {
  readonly status?: string;
  quit(): Promise<unknown>;
  disconnect(): void;
}): Promise<void> {
  if (client.status === 'ready') {
    await withDeadline(client.quit(), QUIT_TIMEOUT).catch(() => undefined);
  }
  client.disconnect();
  disarmSlotRefresh(client);
}

/**
 * ioredis (6.0): a Cluster whose periodic slot refresh (`slotsRefreshInterval`) is
 * under way when it is closed re-arms that refresh once it ends; the timer then
 * keeps the process alive, refreshing a closed cluster forever. Closing it once
 * more after that refresh clears the timer again. No-op for anything else.
 */
export function disarmSlotRefresh(client: { disconnect(): void }): void {
  const cluster = client as {
    readonly isRefreshing?: boolean;
    refreshSlotsCache?: (callback: () => void) => void;
  };
  if (cluster.isRefreshing === true && typeof cluster.refreshSlotsCache === 'function') {
    // Queued behind the callback that re-arms the timer: it runs after it.
    cluster.refreshSlotsCache(() => {
      client.disconnect();
    });
  }
}

function nodeRedisConnection(client: NodeRedisClient): RedisConnection {
  return {
    publish: 'PUBLISH',
    evalsha: (sha, keys, args) =>
      client.sendCommand(['EVALSHA', sha, String(keys.length), ...keys, ...args]),
    eval: (script, keys, args) =>
      client.sendCommand(['EVAL', script, String(keys.length), ...keys, ...args]),
    scan: async (cursor, pattern, count) =>
      scanReply(
        await client.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(count)]),
      ),
    openSubscriber: () => {
      const subscriber = client.duplicate();
      // node-redis throws an unhandled 'error' event; failures reach callers through commands.
      subscriber.on('error', () => undefined);
      let closed = false;
      const isClosed = (): boolean => closed; // read afresh after each wait
      const drop = async (): Promise<void> => {
        try {
          if (subscriber.destroy !== undefined) subscriber.destroy.call(subscriber);
          else await subscriber.disconnect?.call(subscriber);
        } catch {
          // Already closed.
        }
      };
      // Connected on first use; a failed attempt (a client without reconnection) is retried then.
      let connecting: Promise<unknown> | undefined;
      const ready = async (): Promise<void> => {
        if (isClosed()) throw new Error('the wake-up connection is closed');
        if (connecting === undefined) {
          const attempt = subscriber.connect();
          connecting = attempt;
          attempt.catch(() => {
            if (connecting === attempt) connecting = undefined;
          });
        }
        await connecting;
        if (isClosed()) throw new Error('the wake-up connection was closed while connecting');
      };
      return {
        subscribe: async (channel, onMessage) => {
          await ready();
          await subscriber.subscribe(channel, (message) => {
            onMessage(message);
          });
        },
        unsubscribe: async (channel) => {
          await ready();
          await subscriber.unsubscribe(channel);
        },
        close: async () => {
          closed = true;
          // node-redis completes an attempt under way at close() (its socket was not
          // made yet, so nothing was there to close) and keeps it open: drop it once made.
          connecting?.then(drop, () => undefined);
          const graceful = subscriber.close ?? subscriber.quit;
          try {
            if (graceful !== undefined) {
              await withDeadline(graceful.call(subscriber), QUIT_TIMEOUT);
            }
          } catch {
            // Not connected, or the server is gone: drop the socket below.
          }
          await drop();
        },
      };
    },
    // The client belongs to the user.
    close: () => Promise.resolve(),
    lastConnectionError: () => undefined,
  };
}

/** node-redis hands raw replies back: `[cursor, keys]`, as strings or Buffers. */
function scanReply(reply: unknown): [string, string[]] {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) {
    throw new Error(`unexpected SCAN reply ${JSON.stringify(reply)}`);
  }
  const [cursor, keys] = reply as [unknown, unknown[]];
  return [String(cursor), keys.map(String)];
}

function ioredisAddress(options: unknown): string {
  const { host, port, db, tls, path } = (options ?? {}) as Record<string, unknown>;
  if (typeof path === 'string') return `redis+unix://${path}`;
  return formatAddress(tls === undefined ? 'redis' : 'rediss', host, port, db);
}

function nodeRedisAddress(options: unknown): string {
  const { url, socket, database } = (options ?? {}) as Record<string, unknown>;
  if (typeof url === 'string') return redactUrl(url);
  const { host, port, tls, path } = (socket ?? {}) as Record<string, unknown>;
  if (typeof path === 'string') return `redis+unix://${path}`;
  return formatAddress(tls === true ? 'rediss' : 'redis', host, port, database);
}

function formatAddress(scheme: string, host: unknown, port: unknown, db: unknown): string {
  const name = typeof host === 'string' && host !== '' ? host : 'localhost';
  const shown = name.includes(':') ? `[${name}]` : name;
  const portText = typeof port === 'number' || typeof port === 'string' ? String(port) : '6379';
  const database = typeof db === 'number' && db !== 0 ? `/${String(db)}` : '';
  return `${scheme}://${shown}:${portText}${database}`;
}

/** A short reason for a client error, in words that make sense without the client's docs. */
export function describeFailure(error: unknown, connectionError: Error | undefined): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'MaxRetriesPerRequestError') {
    return connectionError === undefined
      ? 'not connected (a reconnection attempt failed)'
      : `not connected (${connectionError.message})`;
  }
  return error.message.replace(/\.$/, '');
}

/** Rejects when `promise` has not settled after `ms`. */
export function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no reply within ${String(ms)} ms`));
    }, ms);
  });
  return Promise.race([promise, deadline]).finally(() => {
    clearTimeout(timer);
  });
}

/**
 * Whether the server refused a script because of what a key holds: a value
 * of another type (WRONGTYPE), or content a script could not parse (a Lua
 * error, or an error the script raised about it, prefixed `disref:`).
 */
export function isUnreadableData(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  return /^WRONGTYPE |^ERR (user_script:|disref: |.*\bscript: \w+, on @user_script)/.test(
    error.message,
  );
}
