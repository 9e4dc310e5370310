/**
 * A real Redis Cluster for tests: `redis-server --cluster-enabled yes`
 * processes on free loopback ports (no persistence; each keeps its
 * `nodes.conf` in its own directory, so a stopped node restarts as the same
 * cluster member, with no data), joined by `redis-cli --cluster create`,
 * and ready once every node reports `cluster_state:ok` and every replica is
 * attached. Stopped with the test process like every server of servers.ts.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { disarmSlotRefresh } from '../../src/backends/redis/client.js';
import { findBinary, RedisServer } from './servers.js';

const run = promisify(execFile);

/** Why cluster tests cannot run here, or undefined when both binaries exist. */
export function redisClusterUnavailable(): string | undefined {
  for (const binary of ['redis-server', 'redis-cli']) {
    if (findBinary(binary) === undefined) {
      return `${binary} not found on PATH: install redis (apt-get install redis-server redis-tools) to test Redis Cluster`;
    }
  }
  return undefined;
}

/** One cluster node and what it is now. */
export interface ClusterNode {
  readonly server: RedisServer;
  readonly port: number;
}

export class RedisCluster {
  readonly nodes: readonly ClusterNode[];
  private readonly nodeTimeout: number;

  private constructor(nodes: ClusterNode[], nodeTimeout: number) {
    this.nodes = nodes;
    this.nodeTimeout = nodeTimeout;
  }

  /**
   * Starts `primaries` primaries, each with `replicasPerPrimary` replicas,
   * and waits until the cluster serves every slot. `nodeTimeout` is
   * `cluster-node-timeout`: a primary unreachable for that long is failed
   * over (or, without replicas, the cluster goes down).
   */
  static async start(
    options: { primaries?: number; replicasPerPrimary?: number; nodeTimeout?: number } = {},
  ): Promise<RedisCluster> {
    const primaries = options.primaries ?? 3;
    const replicas = options.replicasPerPrimary ?? 0;
    const nodeTimeout = options.nodeTimeout ?? 2_000;
    const args = [
      ...['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
      ...['--cluster-node-timeout', String(nodeTimeout)],
      // A replica may be promoted however long it was cut off (tests kill primaries on purpose).
      ...['--cluster-replica-validity-factor', '0'],
      // Replicas sync at once instead of after the default 5 s wait for more replicas.
      ...['--repl-diskless-sync-delay', '0'],
    ];
    const servers = await Promise.all(
      Array.from({ length: primaries * (1 + replicas) }, () => RedisServer.start({ args })),
    );
    const cluster = new RedisCluster(
      servers.map((server) => ({ server, port: server.port })),
      nodeTimeout,
    );
    try {
      const cli = findBinary('redis-cli');
      if (cli === undefined) throw new Error(redisClusterUnavailable());
      await run(cli, [
        '--cluster',
        'create',
        ...servers.map((server) => `127.0.0.1:${String(server.port)}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ]);
      await cluster.waitUntilHealthy();
    } catch (error) {
      await cluster.dispose();
      throw error;
    }
    return cluster;
  }

  /** `redis-cluster://` URL naming every node as a seed. */
  get url(): string {
    return `redis-cluster://${this.nodes.map(({ port }) => `127.0.0.1:${String(port)}`).join(',')}`;
  }

  /** Seed nodes for an ioredis `Cluster`. */
  get seeds(): { host: string; port: number }[] {
    return this.nodes.map(({ port }) => ({ host: '127.0.0.1', port }));
  }

  /** An admin ioredis Cluster client (the caller closes it with {@link closeCluster}). */
  client(): Cluster {
    return new Cluster(this.seeds, { lazyConnect: true, slotsRefreshInterval: 1_000 });
  }

  /** A plain connection to one node (the caller disconnects it). */
  connectTo(node: ClusterNode): Redis {
    return new Redis(node.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  }

  /** The running node that serves `slot` as primary, per that node's own view. */
  async primaryOf(slot: number): Promise<ClusterNode> {
    for (const node of this.nodes) {
      if (!node.server.running) continue;
      const info = await this.query(node, (redis) => redis.call('CLUSTER', 'NODES'));
      const myself = String(info)
        .split('\n')
        .find((line) => line.includes('myself'));
      if (myself === undefined || !myself.includes('master')) continue;
      const ranges = myself.split(' ').slice(8);
      for (const range of ranges) {
        const [start, end] = range.split('-').map(Number);
        if (start !== undefined && slot >= start && slot <= (end ?? start)) return node;
      }
    }
    throw new Error(`no running primary serves slot ${String(slot)}`);
  }

  /** The replicas (running, per their own view) of `primary`. */
  async replicasOf(primary: ClusterNode): Promise<ClusterNode[]> {
    const id = String(await this.query(primary, (redis) => redis.call('CLUSTER', 'MYID')));
    const replicas: ClusterNode[] = [];
    for (const node of this.nodes) {
      if (node === primary || !node.server.running) continue;
      const info = String(await this.query(node, (redis) => redis.info('replication')));
      const nodes = String(await this.query(node, (redis) => redis.call('CLUSTER', 'NODES')));
      const myself = nodes.split('\n').find((line) => line.includes('myself'));
      if (info.includes('role:slave') && myself?.split(' ')[3] === id) replicas.push(node);
    }
    return replicas;
  }

  /** The running primaries. */
  async primaries(): Promise<ClusterNode[]> {
    const found: ClusterNode[] = [];
    for (const node of this.nodes) {
      if (!node.server.running) continue;
      const info = String(await this.query(node, (redis) => redis.info('replication')));
      if (info.includes('role:master')) found.push(node);
    }
    return found;
  }

  /** FLUSHALL on every running primary (replicas follow). */
  async flushAll(): Promise<void> {
    for (const node of await this.primaries()) {
      await this.query(node, (redis) => redis.flushall());
    }
  }

  /**
   * Waits until every running node says `cluster_state:ok`, agrees that all
   * 16384 slots are served, and every running replica is in sync with its
   * primary.
   */
  async waitUntilHealthy(timeout = 30_000): Promise<void> {
    const deadline = Date.now() + timeout;
    let last: string;
    for (;;) {
      try {
        last = await this.health();
        if (last === '') return;
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) throw new Error(`cluster not healthy: ${last}`);
      await sleep(100);
    }
  }

  /** Stops every node and removes their directories. */
  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map(({ server }) => server.dispose()));
  }

  /** How long a failover takes at most, with this cluster's node timeout (detection + election). */
  get failoverBound(): number {
    return 4 * this.nodeTimeout + 5_000;
  }

  /** '' when healthy, else what is not. */
  private async health(): Promise<string> {
    for (const node of this.nodes) {
      if (!node.server.running) continue;
      const info = String(await this.query(node, (redis) => redis.call('CLUSTER', 'INFO')));
      if (!info.includes('cluster_state:ok')) return `node ${String(node.port)} not ok`;
      if (!info.includes('cluster_slots_ok:16384')) {
        return `node ${String(node.port)} does not see every slot served`;
      }
      const replication = String(await this.query(node, (redis) => redis.info('replication')));
      if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) {
        return `replica ${String(node.port)} not in sync`;
      }
    }
    return '';
  }

  private async query<T>(node: ClusterNode, ask: (redis: Redis) => Promise<T>): Promise<T> {
    const redis = this.connectTo(node);
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      return await ask(redis);
    } finally {
      redis.disconnect();
    }
  }
}

/**
 * Disconnects an ioredis Cluster the tests made, including the periodic slot
 * refresh ioredis re-arms when one was under way (see `disarmSlotRefresh`).
 */
export function closeCluster(client: Cluster): void {
  client.disconnect();
  disarmSlotRefresh(client);
}
