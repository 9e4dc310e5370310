/**
 * Conformance targets over several independent `redis-server`s started by
 * the harness: `redis-sharded://` (each key on one server; runs the lock and
 * the reference suites) and `redis-quorum://` (Redlock over a majority; the
 * lock suite only, since the quorum backend refuses references).
 */
import { Redis } from 'ioredis';
import { connect } from '../../src/index.js';
import { RedisServer, redisUnavailable } from './servers.js';
import { markNamespaceFresh, type BackendTarget } from './targets.js';

/** `count` servers started together, with an admin client each. */
export class RedisServerSet {
  private constructor(
    readonly servers: readonly RedisServer[],
    readonly admins: readonly Redis[],
  ) {}

  static async start(count: number): Promise<RedisServerSet> {
    const servers = await Promise.all(Array.from({ length: count }, () => RedisServer.start()));
    const admins = servers.map(
      (server) =>
        new Redis(server.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 }),
    );
    // Tests stop servers: their admin client's errors are expected, not worth a log line.
    for (const admin of admins) admin.on('error', () => undefined);
    await Promise.all(admins.map((admin) => admin.connect()));
    return new RedisServerSet(servers, admins);
  }

  /** `scheme://127.0.0.1:p1,127.0.0.1:p2,...` */
  url(scheme: 'redis-sharded' | 'redis-quorum'): string {
    return `${scheme}://${this.servers.map((server) => `127.0.0.1:${String(server.port)}`).join(',')}`;
  }

  /**
   * Skips the start-up quarantine for `namespace` on every server: they just
   * started and granted nothing (see markNamespaceFresh in targets.ts).
   */
  async markFresh(namespace: string): Promise<void> {
    await Promise.all(this.admins.map((admin) => markNamespaceFresh(admin, namespace)));
  }

  async flushAll(): Promise<void> {
    await Promise.all(this.admins.map((admin) => admin.flushall()));
  }

  async dispose(): Promise<void> {
    for (const admin of this.admins) admin.disconnect();
    await Promise.all(this.servers.map((server) => server.dispose()));
  }
}

function serverSetTarget(
  name: string,
  scheme: 'redis-sharded' | 'redis-quorum',
  count: number,
): BackendTarget {
  const unavailable = redisUnavailable();
  let set: RedisServerSet | undefined;
  return {
    name,
    ...(unavailable === undefined ? {} : { unavailable }),
    references: scheme === 'redis-sharded',
    setup: async () => {
      set = await RedisServerSet.start(count);
    },
    connect: async (options) => {
      if (set === undefined) throw new Error(`${name}: setup() not run`);
      await set.markFresh(options.namespace);
      return connect({ ...options, url: set.url(scheme) });
    },
    loseAllData: async () => {
      await set?.flushAll();
    },
    teardown: async () => {
      await set?.dispose();
    },
  };
}

/** Three independent servers, each key on one (rendezvous hashing). */
export function redisShardedTarget(): BackendTarget {
  return serverSetTarget('redis sharded (3 servers)', 'redis-sharded', 3);
}

/** Three independent servers, each lock on a majority (Redlock). */
export function redisQuorumTarget(): BackendTarget {
  return serverSetTarget('redis quorum (3 servers)', 'redis-quorum', 3);
}
