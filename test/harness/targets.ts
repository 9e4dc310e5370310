/**
 * The backends the conformance suite runs against. Memory always runs; a
 * backend whose server binary is missing is skipped loudly, and with
 * DISREF_REQUIRE_SERVERS=1 (CI) a missing server fails the run.
 */
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import type { ConnectOptions, Disref } from '../../src/index.js';
import { connect } from '../../src/index.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { markerKey } from '../../src/backends/redis/keys.js';
import { memcachedTarget } from './memcached-target.js';
import { redisClusterTarget } from './redis-cluster-target.js';
import { redisQuorumTarget, redisShardedTarget } from './redis-set-target.js';
import { RedisServer, redisUnavailable } from './servers.js';

export interface BackendTarget {
  /** Shown in test names, e.g. `memory`, `redis (ioredis)`. */
  readonly name: string;
  /** Why the target cannot run here (missing binary), or undefined when it can. */
  readonly unavailable?: string;
  /** Starts servers; called once before the suite. */
  setup(): Promise<void>;
  /** A new `Disref`, as a separate process would have; each test uses its own namespace. */
  connect(options: ConnectOptions & { namespace: string }): Promise<Disref>;
  /** The backend implements reference counting (the reference suite runs). */
  readonly references?: boolean;
  /** Makes the store lose every key (restart without persistence, FLUSHALL). */
  loseAllData(disref: Disref): Promise<void>;
  /** Stops servers. */
  teardown(): Promise<void>;
}

export const memoryTarget: BackendTarget = {
  name: 'memory',
  references: true,
  setup: () => Promise.resolve(),
  connect: (options) => connect({ ...options, url: 'memory://conformance' }),
  loseAllData: (disref) => {
    (disref.backend as MemoryBackend).store.loseAllData();
    return Promise.resolve();
  },
  teardown: () => Promise.resolve(),
};

/**
 * Marks `namespace` as in use on a test server since before any lease: a
 * freshly started server has served no leases, but disref cannot know that
 * and would hold back grants until the server is `maxTtl` old (see the
 * marker in src/backends/redis/scripts/includes/marker.lua). The Redis tests
 * check that start-up quarantine on purpose; the conformance suite skips it.
 */
export async function markNamespaceFresh(admin: Redis, namespace: string): Promise<void> {
  await admin.hsetnx(markerKey(namespace), 'epoch', 'fresh-test-server');
}

/** A Redis target: its own `redis-server`, and a way to hand each `Disref` its client. */
function redisTarget(
  name: string,
  connectTo: (
    server: RedisServer,
    options: ConnectOptions & { namespace: string },
  ) => Promise<Disref>,
  cleanup: () => Promise<void> = () => Promise.resolve(),
): BackendTarget {
  let server: RedisServer | undefined;
  let admin: Redis | undefined;
  const unavailable = redisUnavailable();
  return {
    name,
    ...(unavailable === undefined ? {} : { unavailable }),
    references: true,
    setup: async () => {
      server = await RedisServer.start();
      admin = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
      await admin.connect();
    },
    connect: async (options) => {
      if (server === undefined || admin === undefined) throw new Error(`${name}: setup() not run`);
      await markNamespaceFresh(admin, options.namespace);
      return connectTo(server, options);
    },
    loseAllData: async () => {
      await admin?.flushall();
    },
    teardown: async () => {
      await cleanup();
      admin?.disconnect();
      await server?.dispose();
    },
  };
}

/** disref creates (and closes) an ioredis client from the URL. */
export function ioredisTarget(): BackendTarget {
  return redisTarget('redis (ioredis, from URL)', (server, options) =>
    connect({ ...options, url: server.url }),
  );
}

/** The user passes a connected node-redis client in; it stays theirs (closed at teardown). */
export function nodeRedisTarget(): BackendTarget {
  const clients: { close(): Promise<void> }[] = [];
  return redisTarget(
    'redis (node-redis client passed in)',
    async (server, options) => {
      const client = createClient({ url: server.url });
      client.on('error', () => undefined);
      await client.connect();
      clients.push(client);
      return connect({ ...options, redis: client });
    },
    async () => {
      await Promise.all(clients.splice(0).map((client) => client.close()));
    },
  );
}

/** Every target the conformance suite runs against. */
export function allTargets(): BackendTarget[] {
  return [
    memoryTarget,
    ioredisTarget(),
    nodeRedisTarget(),
    redisClusterTarget(),
    redisShardedTarget(),
    redisQuorumTarget(),
    memcachedTarget(1),
    memcachedTarget(3),
  ];
}
