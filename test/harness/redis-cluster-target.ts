/**
 * The conformance target over a real 3-primary Redis Cluster started by the
 * harness (test/harness/redis-cluster.ts); disref creates its ioredis
 * `Cluster` from the `redis-cluster://` URL. Runs the lock and the reference
 * suites.
 */
import type { Cluster } from 'ioredis';
import { connect } from '../../src/index.js';
import { markerKey } from '../../src/backends/redis/keys.js';
import { closeCluster, RedisCluster, redisClusterUnavailable } from './redis-cluster.js';
import type { BackendTarget } from './targets.js';

/**
 * Marks `namespace` as created now, before any lease: the cluster's nodes
 * started moments ago, and a slot marker created on a node younger than
 * `maxTtl` quarantines unless the namespace is known to be younger than the
 * node (src/backends/redis/scripts/includes/slot-marker.lua). The cluster
 * tests check that start-up quarantine on purpose; the conformance suite
 * skips it.
 */
export async function markClusterNamespaceFresh(admin: Cluster, namespace: string): Promise<void> {
  await admin.eval(
    `local time = redis.call('TIME')
     redis.call('HSETNX', KEYS[1], 'epoch', 'fresh-test-cluster')
     redis.call('HSETNX', KEYS[1], 'created', string.format('%.0f', time[1] * 1000 + math.floor(time[2] / 1000)))`,
    1,
    markerKey(namespace),
  );
}

/** disref creates (and closes) an ioredis Cluster from the URL of a 3-primary cluster. */
export function redisClusterTarget(): BackendTarget {
  const name = 'redis-cluster (3 primaries, ioredis Cluster from URL)';
  const unavailable = redisClusterUnavailable();
  let cluster: RedisCluster | undefined;
  let admin: Cluster | undefined;
  return {
    name,
    ...(unavailable === undefined ? {} : { unavailable }),
    references: true,
    setup: async () => {
      cluster = await RedisCluster.start({ primaries: 3 });
      admin = cluster.client();
      await admin.connect();
    },
    connect: async (options) => {
      if (cluster === undefined || admin === undefined) throw new Error(`${name}: setup() not run`);
      await markClusterNamespaceFresh(admin, options.namespace);
      return connect({ ...options, url: cluster.url });
    },
    loseAllData: async () => {
      await cluster?.flushAll();
    },
    teardown: async () => {
      if (admin !== undefined) closeCluster(admin);
      await cluster?.dispose();
    },
  };
}
