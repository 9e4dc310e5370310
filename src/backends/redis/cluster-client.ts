/**
 * The Redis Cluster side of the client adapter: a {@link RedisConnection}
 * over an ioredis `Cluster`, created by disref from a `redis-cluster://` URL
 * (loaded lazily) or passed in by the user (never closed).
 *
 * What changes against one server:
 * - scripts go by EVALSHA to the primary of their keys' slot (ioredis routes
 *   by the first key, follows MOVED / ASK, retries TRYAGAIN, CLUSTERDOWN and
 *   closed connections after a failover); a node that never saw a script
 *   answers NOSCRIPT and gets the full script once (scripts.ts);
 * - SCAN walks every primary in turn (the cursor names the node);
 * - wake-ups use sharded pub/sub on Redis 7 or later (SSUBSCRIBE through a
 *   duplicate of the client with one subscriber connection per primary,
 *   re-subscribed by ioredis when slots move), so a lock's channel lives on
 *   the node of its slot. Older clusters fall back to plain pub/sub, which
 *   Redis broadcasts to every node (one subscriber connection, more traffic).
 *   The choice is made once, at connect, from the lowest version among the
 *   primaries.
 * @module
 */
import type { ClusterOptions } from 'ioredis';
import type { HostPort, StoreAddress } from '../../config.js';
import { BackendError, InvalidArgumentError } from '../../errors.js';
import {
  COMMAND_TIMEOUT,
  CONNECT_TIMEOUT,
  quitIoredis,
  withDeadline,
  type RedisConnection,
  type RedisSubscriber,
} from './client.js';
import type { PublishCommand } from './scripts.js';

type ClusterUrlAddress = Extract<StoreAddress, { scheme: 'redis-cluster' }>;

/** One node connection of an ioredis Cluster, as `cluster.nodes()` lists it. */
export interface IoredisClusterNode {
  readonly options: { readonly host?: string; readonly port?: number };
  info(section: string): Promise<string>;
  scan(
    cursor: string,
    matchToken: 'MATCH',
    pattern: string,
    countToken: 'COUNT',
    count: number,
  ): Promise<[string, string[]]>;
}

/** The part of an ioredis (v5, v6) `Cluster` disref uses. */
export interface IoredisClusterClient {
  readonly isCluster: true;
  readonly status: string;
  evalsha(sha: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  eval(script: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  info(section: string): Promise<string>;
  nodes(role: 'master'): IoredisClusterNode[];
  duplicate(
    startupNodes: never[],
    options: { shardedSubscribers: boolean; lazyConnect: boolean; enableOfflineQueue: boolean },
  ): IoredisClusterSubscriberClient;
  connect(): Promise<void>;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/** A duplicate of the cluster client, used only for (sharded) SUBSCRIBE. */
export interface IoredisClusterSubscriberClient {
  readonly status: string;
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  ssubscribe(channel: string): Promise<unknown>;
  sunsubscribe(channel: string): Promise<unknown>;
  on(event: 'message' | 'smessage', listener: (channel: string, message: string) => void): unknown;
  on(event: 'error' | 'node error', listener: (error: Error) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/** Whether `client` is an ioredis `Cluster` (it says so itself: `isCluster`). */
export function isIoredisCluster(client: unknown): client is IoredisClusterClient {
  if (typeof client !== 'object' || client === null) return false;
  const candidate = client as Record<string, unknown>;
  return (
    candidate.isCluster === true &&
    typeof candidate.evalsha === 'function' &&
    typeof candidate.nodes === 'function' &&
    typeof candidate.duplicate === 'function'
  );
}

/** The address of a cluster for errors: every seed node, never credentials. */
export function describeClusterAddress(servers: readonly HostPort[]): string {
  const nodes = servers.map(
    ({ host, port }) => `${host.includes(':') ? `[${host}]` : host}:${String(port)}`,
  );
  return `redis-cluster://${nodes.join(',')}`;
}

/** The address of a Cluster passed in, from the seed nodes it was made with. */
export function clusterClientAddress(client: IoredisClusterClient): string {
  // `startupNodes` is private in ioredis's types but present at run time.
  const seeds = (client as unknown as { startupNodes?: unknown }).startupNodes;
  const servers: HostPort[] = [];
  if (Array.isArray(seeds)) {
    for (const seed of seeds as unknown[]) {
      if (typeof seed === 'object' && seed !== null) {
        const { host, port } = seed as { host?: unknown; port?: unknown };
        servers.push({
          host: typeof host === 'string' ? host : '127.0.0.1',
          port: typeof port === 'number' ? port : 6379,
        });
      } else if (typeof seed === 'string' || typeof seed === 'number') {
        // ioredis also takes `port` or `host:port` seeds.
        const text = String(seed);
        const colon = text.lastIndexOf(':');
        servers.push({
          host: colon < 0 ? '127.0.0.1' : text.slice(0, colon),
          port: Number(colon < 0 ? text : text.slice(colon + 1)),
        });
      }
    }
  }
  return servers.length === 0
    ? 'redis-cluster://(client passed in)'
    : describeClusterAddress(servers);
}

/**
 * Creates an ioredis `Cluster` for a `redis-cluster://` URL and waits until
 * it is ready (slot map loaded, `cluster_state:ok`), within
 * {@link CONNECT_TIMEOUT} ms per attempt. Wakes waiters with `publish`, by
 * default chosen from the primaries' versions.
 *
 * Why these options: commands are not queued while the cluster is down or
 * reconnecting (`enableOfflineQueue: false`), so none runs late, after its
 * caller gave up (a late acquire would hold a lock for nobody); redirections
 * and the retries after a failover (`retryDelayOnFailover`, up to
 * `maxRedirections` times) take about 3 s, so a command either finds the new
 * primary or fails well within the backend's 5 s bound; the slot map is
 * refreshed every 5 s and after every MOVED, so a promoted replica is found
 * soon after the cluster elected it.
 */
export async function createClusterConnection(
  address: ClusterUrlAddress,
  publish?: PublishCommand,
  clientName?: string,
): Promise<RedisConnection> {
  const where = describeClusterAddress(address.servers);
  let Cluster: typeof import('ioredis').Cluster;
  try {
    // Loaded only when a redis-cluster:// URL is used.
    ({ Cluster } = await import('ioredis'));
  } catch (error) {
    throw new BackendError(
      where,
      'the ioredis package could not be loaded; install it with `npm install ioredis`',
      { cause: error },
    );
  }
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    maxRedirections: 16,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    slotsRefreshTimeout: 2_000,
    slotsRefreshInterval: 5_000,
    clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    redisOptions: {
      username: address.username,
      password: address.password,
      connectTimeout: CONNECT_TIMEOUT,
      commandTimeout: COMMAND_TIMEOUT,
      maxRetriesPerRequest: 1,
      ...(clientName === undefined ? {} : { connectionName: clientName }),
    },
  };
  const client = new Cluster(
    address.servers.map(({ host, port }) => ({ host, port })),
    options,
  );
  // Failures reach callers through their commands; the last one explains a refused command.
  let lastError: Error | undefined;
  const remember = (error: Error): void => {
    lastError = error;
  };
  client.on('error', remember);
  client.on('node error', remember);
  client.on('ready', () => {
    lastError = undefined;
  });
  try {
    await withDeadline(client.connect(), CONNECT_TIMEOUT);
  } catch (error) {
    // A failed first connection is not retried in the background: the next operation starts over.
    client.disconnect();
    throw new Error(
      `cannot reach the cluster (${lastError?.message ?? (error instanceof Error ? error.message : String(error))})`,
      { cause: error },
    );
  }
  const cluster = client as unknown as IoredisClusterClient;
  return {
    ...clusterConnection(cluster, publish ?? (await detectPublish(cluster)), { owned: true }),
    lastConnectionError: () => lastError,
  };
}

/**
 * Wraps an ioredis `Cluster` passed to `connect({ redis })`: waits for it to
 * be usable and picks the wake-up mode from its primaries' versions (unless
 * `publish` says which).
 */
export async function connectionForCluster(
  client: unknown,
  publish?: PublishCommand,
): Promise<RedisConnection> {
  if (!isIoredisCluster(client)) {
    throw new InvalidArgumentError('options.redis', 'an ioredis `Cluster` instance', client);
  }
  // A lazy client connects on its first command; INFO goes to any node once the slots are known.
  await client.info('server');
  return clusterConnection(client, publish ?? (await detectPublish(client)), { owned: false });
}

/** SPUBLISH when every reachable primary runs Redis 7 or later, else PUBLISH. */
async function detectPublish(client: IoredisClusterClient): Promise<PublishCommand> {
  const primaries = client.nodes('master');
  const replies = await Promise.allSettled(
    primaries.map((node) => withDeadline(node.info('server'), COMMAND_TIMEOUT)),
  );
  const versions = replies
    .filter((reply): reply is PromiseFulfilledResult<string> => reply.status === 'fulfilled')
    .map((reply) => Number(/redis_version:(\d+)/.exec(reply.value)?.[1] ?? '0'));
  if (versions.length === 0) {
    throw new Error('no primary of the cluster answered INFO');
  }
  return Math.min(...versions) >= 7 ? 'SPUBLISH' : 'PUBLISH';
}

function clusterConnection(
  client: IoredisClusterClient,
  publish: PublishCommand,
  { owned }: { owned: boolean },
): RedisConnection {
  return {
    publish,
    evalsha: (sha, keys, args) => client.evalsha(sha, keys.length, ...keys, ...args),
    eval: (script, keys, args) => client.eval(script, keys.length, ...keys, ...args),
    scan: (cursor, pattern, count) => scanPrimaries(client, cursor, pattern, count),
    openSubscriber: () => clusterSubscriber(client, publish === 'SPUBLISH'),
    close: () => (owned ? quitIoredis(client) : Promise.resolve()),
    lastConnectionError: () => undefined,
  };
}

/**
 * One SCAN step over the whole cluster: the cursor is `<node>:<cursor>`,
 * the node being an index into the primaries sorted by address. Keys of a
 * slot that moves during the walk may be missed or listed twice.
 */
async function scanPrimaries(
  client: IoredisClusterClient,
  cursor: string,
  pattern: string,
  count: number,
): Promise<[string, string[]]> {
  const primaries = client
    .nodes('master')
    .map((node) => ({
      node,
      name: `${node.options.host ?? ''}:${String(node.options.port ?? '')}`,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const match = /^(\d+):(\d+)$/.exec(cursor);
  const index = match === null ? 0 : Number(match[1]);
  const inner = match === null ? '0' : (match[2] ?? '0');
  const current = primaries[index];
  if (current === undefined) return ['0', []];
  const [next, keys] = await current.node.scan(inner, 'MATCH', pattern, 'COUNT', count);
  if (next !== '0') return [`${String(index)}:${next}`, keys];
  return [index + 1 < primaries.length ? `${String(index + 1)}:0` : '0', keys];
}

function clusterSubscriber(client: IoredisClusterClient, sharded: boolean): RedisSubscriber {
  // Queued until ready: a subscription is made before the first wait, not during an outage.
  const subscriber = client.duplicate([], {
    shardedSubscribers: sharded,
    lazyConnect: true,
    enableOfflineQueue: true,
  });
  subscriber.on('error', () => undefined);
  subscriber.on('node error', () => undefined);
  const handlers = new Map<string, (message: string) => void>();
  subscriber.on(sharded ? 'smessage' : 'message', (channel: string, message: string) => {
    handlers.get(channel)?.(message);
  });
  return {
    subscribe: async (channel, onMessage) => {
      handlers.set(channel, onMessage);
      await (sharded ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel));
    },
    unsubscribe: async (channel) => {
      handlers.delete(channel);
      await (sharded ? subscriber.sunsubscribe(channel) : subscriber.unsubscribe(channel));
    },
    close: () => quitIoredis(subscriber),
  };
}
