/**
 * The Redis backend on a real Redis Cluster (3 primaries, 1 replica each,
 * started once for this file): keys of one lock and of one resource in one
 * slot, sharded wake-ups on the slot's node, four OS processes contending,
 * a client passed in, the per-slot data-loss markers (start-up, FLUSHALL of
 * one node), a slot moved by resharding, a primary killed and replaced by
 * its replica, and the whole cluster going down and coming back.
 *
 * What a failover does to leases, as these tests show it: a lease that
 * reached the replica before the primary died survives (its holder extends
 * and releases it on the promoted replica); a grant that had not reached it
 * is gone (its holder's next extend fails with LockLostError); and nothing
 * new is granted in the slots of the failed-over primary for maxTtl, so a
 * lost lease and a new one never overlap. Fences keep increasing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import type { AcquireRequest } from '../src/backend.js';
import {
  heldKey,
  lockKeys,
  markerKey,
  pendingKey,
  processesKey,
  referenceKey,
  slotMarkerKey,
} from '../src/backends/redis/keys.js';
import { RedisBackend } from '../src/backends/redis/redis-backend.js';
import { disarmSlotRefresh } from '../src/backends/redis/client.js';
import { luaScripts } from '../src/backends/redis/scripts.js';
import { keySlot } from '../src/backends/redis/slots.js';
import { BackendError, connect, LockLostError, type Disref } from '../src/index.js';
import { assertNoOverlap, runCounterWorkers } from './harness/counter-workers.js';
import {
  closeCluster,
  RedisCluster,
  redisClusterUnavailable,
  type ClusterNode,
} from './harness/redis-cluster.js';
import { markClusterNamespaceFresh } from './harness/redis-cluster-target.js';

const unavailable = redisClusterUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis Cluster tests: ${unavailable} ***\n`);
}

/** Milliseconds `promise` took to settle, and how. */
async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value: T | undefined; error: unknown }> {
  const start = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - start, value, error: undefined };
  } catch (error) {
    return { ms: performance.now() - start, value: undefined, error };
  }
}

/** A lock key (`prefix` + a number) whose keys land in `slot`. */
function keyInSlot(slot: number, prefix: string): string {
  for (let i = 0; ; i++) {
    const key = `${prefix}${String(i)}`;
    if (keySlot(lockKeys('any', key).lock) === slot) return key;
  }
}

/** The slot of a lock key's keys. */
function slotOf(key: string): number {
  return keySlot(lockKeys('any', key).lock);
}

describe('redis cluster', { skip: !requireServers && unavailable }, () => {
  let cluster: RedisCluster;
  let admin: Cluster;
  const open: Disref[] = [];
  /** Clients and backends a test made itself: closed after the suite even if the test failed. */
  const clients: Cluster[] = [];
  const backends: RedisBackend[] = [];
  let counter = 0;

  /** A connected ioredis Cluster of the test's own. */
  const ownClient = async (): Promise<Cluster> => {
    const client = cluster.client();
    clients.push(client);
    await client.connect();
    return client;
  };

  /** Connects in `namespace`, closed after the suite; heartbeats failing during outages are expected. */
  const make = async (namespace: string, options: { maxTtl?: number } = {}): Promise<Disref> => {
    const disref = await connect({
      url: cluster.url,
      namespace,
      maxTtl: options.maxTtl,
      onError: () => undefined,
    });
    open.push(disref);
    return disref;
  };
  /** A namespace marked as created now, after the nodes started (no start-up quarantine). */
  const freshNamespace = async (): Promise<string> => {
    counter += 1;
    const namespace = `c${String(counter)}`;
    await markClusterNamespaceFresh(admin, namespace);
    return namespace;
  };
  /** Runs `ask` on a direct connection to one node. */
  const onNode = async <T>(
    node: ClusterNode,
    ask: (redis: ReturnType<RedisCluster['connectTo']>) => Promise<T>,
  ): Promise<T> => {
    const redis = cluster.connectTo(node);
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      return await ask(redis);
    } finally {
      redis.disconnect();
    }
  };
  const serverSlot = async (key: string): Promise<number> =>
    Number(await admin.call('CLUSTER', 'KEYSLOT', key));
  const request = (key: string, owner: string): AcquireRequest => ({
    key,
    owner,
    mode: 'exclusive',
    ttl: 1_000,
    fair: true,
    wait: false,
    waiterTtl: 1_000,
  });

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    const started = performance.now();
    cluster = await RedisCluster.start({ primaries: 3, replicasPerPrimary: 1, nodeTimeout: 1_500 });
    console.log(`cluster of 6 nodes ready in ${(performance.now() - started).toFixed(0)} ms`);
    admin = cluster.client();
    await admin.connect();
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    await Promise.all(backends.map((backend) => backend.close()));
    for (const client of clients) closeCluster(client);
    closeCluster(admin);
    await cluster.dispose();
  });

  it('quarantines a namespace first used on nodes younger than maxTtl, not one created after they started', async () => {
    // Runs first, while the nodes are seconds old: a missing slot marker on a node that may have
    // restarted under live leases waits for maxTtl (includes/slot-marker.lua).
    counter += 1;
    const unmarked = await make(`c${String(counter)}`, { maxTtl: 600_000 });
    assert.equal(unmarked.backend.name, 'redis-cluster');
    assert.equal(await unmarked.lock('young').tryAcquire(), null, 'granted on a young node');
    const denied = await unmarked.backend.acquire(request('young', 'probe'));
    assert.ok(!denied.granted && denied.retryAfter > 500_000, 'until serverStart + maxTtl');
    const marked = await make(await freshNamespace(), { maxTtl: 600_000 });
    const lease = await marked.lock('young').tryAcquire();
    assert.ok(
      lease !== null,
      'a namespace created after the nodes started has nothing to wait for',
    );
    await lease.release();
  });

  it('keeps the keys of one lock, its slot marker, and the keys of one resource in one slot', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    for (const key of ['invoice:42', 'x'.repeat(300), 'a}b']) {
      const lease = await disref.lock(key).acquire();
      const keys = lockKeys(namespace, key);
      const slot = await serverSlot(keys.lock);
      assert.equal(keySlot(keys.lock), slot, 'disref computes the slot as the server does');
      const marker = slotMarkerKey(namespace, slot);
      for (const name of [keys.queue, keys.fence, keys.channel, marker]) {
        assert.equal(await serverSlot(name), slot, `${name} in the lock's slot`);
      }
      const primary = await cluster.primaryOf(slot);
      assert.equal(
        await onNode(primary, (redis) => redis.exists(keys.lock, keys.fence, marker)),
        3,
        "the lock, its fence and its slot's marker are on the slot's primary",
      );
      await lease.release();
    }
    const reference = await disref.reference('record:1');
    await reference.incrementTimesModified();
    const registry = await serverSlot(processesKey(namespace));
    for (const name of [
      markerKey(namespace),
      heldKey(namespace, disref.id),
      pendingKey(namespace, 'record'),
    ]) {
      assert.equal(await serverSlot(name), registry, `${name} in the registry's slot`);
    }
    assert.equal(
      (await admin.hget(referenceKey(namespace, 'record:1'), `p:${disref.id}`)) !== null,
      true,
    );
    assert.deepEqual(await admin.smembers(heldKey(namespace, disref.id)), ['record:1']);
    assert.equal(await reference.dereference(() => undefined), true);
    assert.equal(await admin.exists(referenceKey(namespace, 'record:1')), 0);
  });

  it("wakes waiters by sharded pub/sub on the node of the lock's slot", async () => {
    const namespace = await freshNamespace();
    const [a, b] = [await make(namespace), await make(namespace)];
    const key = 'sharded';
    const channel = lockKeys(namespace, key).channel;
    const lease = await a.lock(key).acquire();
    let woken = 0;
    const stop = await b.backend.onRelease(key, () => {
      woken += 1;
    });
    const primary = await cluster.primaryOf(slotOf(key));
    for (const node of await cluster.primaries()) {
      const channels = (await onNode(node, (redis) =>
        redis.call('PUBSUB', 'SHARDCHANNELS', channel),
      )) as string[];
      assert.deepEqual(channels, node === primary ? [channel] : [], `node ${String(node.port)}`);
      const broadcast = (await onNode(node, (redis) =>
        redis.call('PUBSUB', 'CHANNELS', channel),
      )) as string[];
      assert.deepEqual(broadcast, [], 'no plain (cluster-wide) subscription');
    }
    await lease.release();
    const deadline = performance.now() + 1_000;
    while (woken === 0 && performance.now() < deadline) await sleep(5);
    assert.equal(woken, 1, 'the release script published once, on the shard');
    stop();
  });

  it('falls back to plain pub/sub (PUBLISH, broadcast by the cluster) as on Redis before 7', async () => {
    const namespace = await freshNamespace();
    const client = await ownClient();
    // What disref picks when a primary runs Redis 6 or older.
    const backend = new RedisBackend({
      server: { client },
      namespace,
      maxTtl: 60_000,
      clusterPublish: 'PUBLISH',
    });
    backends.push(backend);
    await backend.beat('broadcaster', 10_000, true, { host: 'test', pid: 1 }); // learns the namespace
    const key = 'broadcast';
    const channel = lockKeys(namespace, key).channel;
    assert.equal((await backend.acquire(request(key, 'a'))).granted, true);
    let woken = 0;
    const stop = await backend.onRelease(key, () => {
      woken += 1;
    });
    const plain: string[] = [];
    // ioredis puts the one plain subscriber on any node, replicas included.
    for (const node of cluster.nodes.filter(({ server }) => server.running)) {
      const channels = (await onNode(node, (redis) =>
        redis.call('PUBSUB', 'CHANNELS', channel),
      )) as string[];
      plain.push(...channels);
      const sharded = (await onNode(node, (redis) =>
        redis.call('PUBSUB', 'SHARDCHANNELS', channel),
      )) as string[];
      assert.deepEqual(sharded, [], 'no sharded subscription');
    }
    assert.deepEqual(plain, [channel], 'one plain subscription, on one node of the cluster');
    assert.equal(await backend.release(key, 'a'), true);
    const deadline = performance.now() + 1_000;
    while (woken === 0 && performance.now() < deadline) await sleep(5);
    assert.ok(woken >= 1, 'the release reached the subscriber, on whichever node it is');
    stop();
    await backend.removeProcess('broadcaster');
    await backend.close();
    assert.equal(client.status, 'ready', 'a client passed in stays open');
    closeCluster(client);
  });

  it('runs its scripts on nodes that lost their script cache (NOSCRIPT, then EVAL on that node)', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    await (await disref.lock('cached').acquire()).release();
    for (const node of await cluster.primaries()) {
      await onNode(node, (redis) => redis.call('SCRIPT', 'FLUSH'));
    }
    const lease = await disref.lock('cached').acquire();
    await lease.extend();
    await lease.release();
    const primary = await cluster.primaryOf(slotOf('cached'));
    const sha = luaScripts('SPUBLISH').acquire.sha;
    assert.deepEqual(
      await onNode(primary, (redis) => redis.call('SCRIPT', 'EXISTS', sha)),
      [1],
      'cached again on that node',
    );
  });

  it('4 processes x 200 locked GET/SET increments on the cluster: none lost, no overlap', async () => {
    const namespace = await freshNamespace();
    const sections = await runCounterWorkers({
      url: cluster.url,
      namespace,
      workers: 4,
      iterations: 200,
    });
    assert.equal(await admin.get(`${namespace}:counter`), '800');
    assert.ok(assertNoOverlap(sections) >= 200, 'the lock passes between processes');
  });

  it('splits reference operations into registry and resource steps: dead holders are pruned, the last live one claims', async () => {
    const namespace = await freshNamespace();
    const backend = (await make(namespace)).backend;
    const expire = (id: string): Promise<unknown> => admin.zadd(processesKey(namespace), '0', id);
    // Not live: refused, and nothing is written on the resource's side.
    assert.equal(await backend.addReference('job:1', 'stranger'), false);
    assert.equal(await admin.exists(referenceKey(namespace, 'job:1')), 0);
    for (const id of ['a', 'b', 'c']) {
      await backend.beat(id, 60_000, true, { host: 'test', pid: 1 });
      assert.equal(await backend.addReference('job:1', id), true);
    }
    assert.equal(await backend.countReferences('job:1'), 3);
    await expire('c');
    assert.equal(await backend.countReferences('job:1'), 2, 'c pruned');
    assert.equal(await admin.hexists(referenceKey(namespace, 'job:1'), 'p:c'), 0);
    // a leaves while b is live: no claim, and job:1 leaves a's held set.
    const first = await backend.removeReference('job:1', 'a', 5_000);
    assert.deepEqual(first, { removed: true, claim: null });
    assert.deepEqual(await admin.smembers(heldKey(namespace, 'a')), []);
    // Another resource: x leaves last among dead holders, so it claims in a second pass.
    for (const id of ['x', 'y']) {
      await backend.beat(id, 60_000, true, { host: 'test', pid: 1 });
      await backend.addReference('job:2', id);
    }
    await expire('y');
    const last = await backend.removeReference('job:2', 'x', 5_000);
    assert.equal(last.removed, true);
    assert.equal(last.claim?.attempt, 1, 'the last live holder gets the claim');
    const due = Number(await admin.zscore(pendingKey(namespace, 'job'), 'job:2'));
    assert.ok(due > Date.now(), 'queued until the claim lapses');
    // A newer entry (a later claim) survives the finish of this one.
    await admin.zadd(pendingKey(namespace, 'job'), String(due + 60_000), 'job:2');
    assert.equal(await backend.finishCompletion(last.claim, 0), true);
    assert.equal(await admin.exists(referenceKey(namespace, 'job:2')), 0, 'keys deleted');
    assert.equal(
      Number(await admin.zscore(pendingKey(namespace, 'job'), 'job:2')),
      due + 60_000,
      'a newer pending entry is not dropped',
    );
    // Recovery: the entry of a resource that is gone is dropped once due.
    await admin.zadd(pendingKey(namespace, 'job'), '0', 'job:2');
    assert.equal(await backend.claimPendingCompletion(['job'], 5_000), null);
    assert.equal(await admin.zscore(pendingKey(namespace, 'job'), 'job:2'), null);
    // Recovery claims job:1 once its remaining holder b is dead, pruning it on the way.
    await expire('b');
    await backend.reapDeadProcesses();
    const recovered = await backend.claimPendingCompletion(['job'], 5_000);
    assert.equal(recovered?.resource, 'job:1');
    assert.equal(await admin.hexists(referenceKey(namespace, 'job:1'), 'p:b'), 0);
    assert.ok(recovered !== null);
    await backend.abandonCompletion(recovered);
    assert.equal(await admin.zscore(pendingKey(namespace, 'job'), 'job:1'), '0', 'due again');
  });

  it('lists locks and resources of every primary in a snapshot (SCAN walks each node)', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    const primaries = await cluster.primaries();
    const keys: string[] = [];
    for (const node of primaries) {
      const range = String(await onNode(node, (redis) => redis.call('CLUSTER', 'NODES')))
        .split('\n')
        .find((line) => line.includes('myself'))
        ?.split(' ')[8];
      keys.push(keyInSlot(Number(range?.split('-')[0]), `snap-${String(node.port)}-`));
    }
    const leases = await Promise.all(keys.map((key) => disref.lock(key).acquire()));
    await disref.reference('record:snap');
    const snapshot = await disref.backend.snapshot();
    assert.deepEqual(snapshot.locks.map((lock) => lock.key).sort(), [...keys].sort());
    assert.deepEqual(
      snapshot.references.map((ref) => ref.resource),
      ['record:snap'],
    );
    assert.ok(snapshot.processes.some((process) => process.id === disref.id));
    await Promise.all(leases.map((lease) => lease.release()));
  });

  it('leaves no slot-refresh timer when closed while a periodic slot refresh is under way', async () => {
    // ioredis re-arms its periodic refresh when one under way at close ends afterwards;
    // quitIoredis() (every Cluster disref closes) and closeCluster() end with disarmSlotRefresh().
    const client = await ownClient();
    const internals = client as unknown as {
      isRefreshing: boolean;
      slotsTimer: NodeJS.Timeout | null;
      refreshSlotsCache(callback?: () => void): void;
    };
    const refresh = internals.refreshSlotsCache.bind(client);
    // Closed as quitIoredis() ends, in the same turn as the next periodic refresh (every
    // second for this client) starts: that refresh surely ends after the close.
    const closed = new Promise<void>((resolve) => {
      internals.refreshSlotsCache = (callback) => {
        refresh(callback);
        internals.refreshSlotsCache = refresh;
        assert.ok(internals.isRefreshing);
        client.disconnect();
        disarmSlotRefresh(client);
        resolve();
      };
    });
    await closed;
    const deadline = performance.now() + 5_000;
    while (internals.isRefreshing && performance.now() < deadline) await sleep(5);
    await sleep(50);
    const rearmed = internals.slotsTimer !== null;
    closeCluster(client); // (ends the refresh loop, should the check fail)
    assert.equal(rearmed, false, 'the periodic slot refresh was re-armed after close');
  });

  it('uses an ioredis Cluster passed in, and never closes it', async () => {
    const namespace = await freshNamespace();
    const client = await ownClient();
    const disref = await connect({ redis: client, namespace });
    open.push(disref);
    assert.equal(disref.backend.name, 'redis-cluster');
    assert.match(
      disref.backend.address,
      /^redis-cluster:\/\/127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){5}$/,
    );
    const lease = await disref.lock('passed-in').acquire();
    const waiting = disref.lock('passed-in').acquire({ timeout: 2_000 });
    await lease.release();
    await (await waiting).release();
    const ref = await disref.reference('record:passed');
    assert.equal(await ref.dereference(() => undefined), true);
    await disref.close();
    assert.equal(client.status, 'ready', 'the client is still open');
    assert.equal(await client.get('anything'), null, 'and usable');
    closeCluster(client);
  });

  it('closes every connection it opened (node connections, sharded subscribers) on close()', async () => {
    const namespace = await freshNamespace();
    // disref names its connections after the namespace, so other clients of the cluster do not count.
    const opened = async (): Promise<number> => {
      let total = 0;
      for (const node of cluster.nodes) {
        const list = String(await onNode(node, (redis) => redis.call('CLIENT', 'LIST')));
        total += list
          .split('\n')
          .filter((line) => line.includes(` name=disref:${namespace} `)).length;
      }
      return total;
    };
    const disref = await connect({ url: cluster.url, namespace });
    open.push(disref); // closed below; again after the suite if the test fails first
    const lease = await disref.lock('connections').acquire();
    const waiting = disref.lock('connections').acquire({ timeout: 2_000 }); // opens the subscribers
    await sleep(50);
    const during = await opened();
    // A node connection for the scripts at least, and a subscriber.
    assert.ok(during >= 2, `connections were opened: ${String(during)}`);
    await lease.release();
    await (await waiting).release();
    await disref.close();
    const deadline = performance.now() + 2_000;
    while ((await opened()) > 0 && performance.now() < deadline) await sleep(50);
    assert.equal(await opened(), 0, 'every connection closed');
  });

  it('after a FLUSHALL of one primary, quarantines its slots only and keeps fences increasing', async () => {
    const namespace = await freshNamespace();
    const [a, b] = [
      await make(namespace, { maxTtl: 1_500 }),
      await make(namespace, { maxTtl: 1_500 }),
    ];
    const lost = 'flushed-1';
    const flushed = await cluster.primaryOf(slotOf(lost));
    const other = (await cluster.primaries()).find((node) => node !== flushed);
    assert.ok(other !== undefined);
    const otherRange = String(await onNode(other, (redis) => redis.call('CLUSTER', 'NODES')))
      .split('\n')
      .find((line) => line.includes('myself'))
      ?.split(' ')[8];
    const kept = keyInSlot(Number(otherRange?.split('-')[0]), 'kept-');
    const old = await a.lock(lost, { ttl: 1_500 }).acquire(); // a learns the slot's epoch
    await onNode(flushed, (redis) => redis.flushall());
    const lostAt = performance.now();
    assert.equal(await a.lock(lost).tryAcquire(), null, 'granted while the old lease may be live');
    assert.equal(await b.lock(lost).tryAcquire(), null, 'b sees the quarantine a started');
    const elsewhere = await b.lock(kept).tryAcquire();
    assert.ok(elsewhere !== null, 'slots of the other primaries are unaffected');
    await elsewhere.release();
    await assert.rejects(old.extend(), LockLostError);
    const fresh = await b.lock(lost).acquire({ timeout: 5_000 });
    assert.ok(performance.now() - lostAt >= 1_200, 'granted only after the quarantine');
    assert.ok(fresh.fence > old.fence, 'fences keep increasing');
    await fresh.release();
  });

  it('follows a slot moved by resharding (ASK, TRYAGAIN, MOVED): the lease is kept, nothing is quarantined', async () => {
    const namespace = await freshNamespace();
    const [a, b] = [
      await make(namespace, { maxTtl: 600_000 }),
      await make(namespace, { maxTtl: 600_000 }),
    ];
    const key = 'moving';
    const slot = slotOf(key);
    const lease = await a.lock(key, { ttl: 30_000 }).acquire();
    const source = await cluster.primaryOf(slot);
    const target = (await cluster.primaries()).find((node) => node !== source);
    assert.ok(target !== undefined);
    const sourceId = String(await onNode(source, (redis) => redis.call('CLUSTER', 'MYID')));
    const targetId = String(await onNode(target, (redis) => redis.call('CLUSTER', 'MYID')));
    const migrate = (keys: string[]): Promise<unknown> =>
      onNode(source, (redis) =>
        redis.call('MIGRATE', '127.0.0.1', String(target.port), '', '0', '5000', 'KEYS', ...keys),
      );
    await onNode(target, (redis) =>
      redis.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', sourceId),
    );
    await onNode(source, (redis) =>
      redis.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', targetId),
    );
    // Half-way: the lock hash moved, its fence and the slot marker not yet.
    await migrate([lockKeys(namespace, key).lock]);
    await lease.extend(); // one key, now on the target: ASK
    const other = keyInSlot(slot, 'moving-');
    // Keys split between the nodes: TRYAGAIN, retried by ioredis until the move completes.
    const acquiring = timed(b.lock(other).tryAcquire());
    await sleep(200);
    const rest = (await onNode(source, (redis) =>
      redis.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '1000'),
    )) as string[];
    if (rest.length > 0) await migrate(rest);
    for (const node of [target, source, ...(await cluster.primaries())]) {
      await onNode(node, (redis) =>
        redis.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', targetId),
      );
    }
    const moved = await acquiring;
    assert.equal(moved.error, undefined, String(moved.error));
    assert.ok(
      moved.value !== null && moved.value !== undefined,
      'granted after the move, no quarantine',
    );
    await moved.value.release();
    assert.equal((await cluster.primaryOf(slot)).port, target.port, 'the slot moved');
    await lease.extend(); // MOVED
    await lease.release();
    const next = await b.lock(key).tryAcquire();
    assert.ok(next !== null && next.fence > lease.fence);
    await next.release();
    await cluster.waitUntilHealthy();
  });

  it('a primary killed while holding lock keys: its replica takes over; replicated leases survive, a lost grant is detected, nothing is granted in its slots for maxTtl', async () => {
    const maxTtl = 8_000;
    const namespace = await freshNamespace();
    const [a, b] = [await make(namespace, { maxTtl }), await make(namespace, { maxTtl })];
    const kept = 'failover-kept';
    const primary = await cluster.primaryOf(slotOf(kept));
    const [replica] = await cluster.replicasOf(primary);
    assert.ok(replica !== undefined, 'the primary has a replica');
    const lostKey = keyInSlot(slotOf(kept), 'failover-lost-');
    const elsewhereNode = (await cluster.primaries()).find((node) => node !== primary);
    assert.ok(elsewhereNode !== undefined);
    const elsewhereRange = String(
      await onNode(elsewhereNode, (redis) => redis.call('CLUSTER', 'NODES')),
    )
      .split('\n')
      .find((line) => line.includes('myself'))
      ?.split(' ')[8];
    const elsewhere = keyInSlot(Number(elsewhereRange?.split('-')[0]), 'failover-elsewhere-');

    const survivor = await a.lock(kept, { ttl: maxTtl }).acquire();
    // WAIT on the primary: every write so far (the grant included) reached the replica.
    await onNode(primary, async (redis) => {
      await redis.set(lockKeys(namespace, kept).fence.replace(':fence', ':probe'), '1');
      assert.equal(await redis.call('WAIT', '1', '2000'), 1);
    });
    // A grant the replica never sees: it is frozen, the primary drops its link (bytes sent before
    // stay in the replica's socket buffer, later ones are never sent), grants, and dies.
    replica.server.pause();
    await onNode(primary, (redis) => redis.call('CLIENT', 'KILL', 'TYPE', 'replica'));
    const doomed = await a.lock(lostKey, { ttl: maxTtl }).acquire();
    await primary.server.stop();
    replica.server.resume();
    const killedAt = performance.now();

    // While the cluster elects the replica: errors or refusals, never a second holder.
    const during = await timed(b.lock(kept).tryAcquire());
    assert.ok(during.error instanceof BackendError || during.value === null, String(during.error));
    await cluster.waitUntilHealthy(cluster.failoverBound);
    const failoverMs = performance.now() - killedAt;
    console.log(`failover took ${failoverMs.toFixed(0)} ms`);
    assert.equal(
      (await cluster.primaryOf(slotOf(kept))).port,
      replica.port,
      'the replica took over',
    );

    // The replicated lease survives; the grant made after the replica froze is gone.
    await survivor.extend();
    await assert.rejects(doomed.extend(), LockLostError);
    // Nothing new in the failed-over primary's slots: the lost lease may still be running.
    assert.equal(await b.lock(lostKey).tryAcquire(), null, 'quarantined after the failover');
    const denied = await b.backend.acquire(request(lostKey, 'probe'));
    assert.ok(
      !denied.granted && denied.retryAfter > maxTtl - 2_000,
      `retryAfter ${JSON.stringify(denied)}`,
    );
    const unaffected = await b.lock(elsewhere).tryAcquire();
    assert.ok(unaffected !== null, 'other primaries grant as usual');
    await unaffected.release();
    assert.equal(await b.lock(kept).tryAcquire(), null, 'the surviving lease is still held');

    // After maxTtl, the slot grants again, with higher fences.
    const next = await b.lock(lostKey).acquire({ timeout: maxTtl + 5_000 });
    assert.ok(next.fence > doomed.fence, 'fences keep increasing across the failover');
    await next.release();
    await survivor.release();
    const taken = await b.lock(kept).acquire({ timeout: 2_000 });
    assert.ok(taken.fence > survivor.fence);
    await taken.release();

    // The old primary comes back empty and follows its former replica.
    await primary.server.restart();
    await cluster.waitUntilHealthy(cluster.failoverBound);
    assert.equal((await cluster.replicasOf(replica))[0]?.port, primary.port);
  });

  it('gives BackendError within seconds while the cluster is down, and works again once it is back', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace, { maxTtl: 2_000 });
    const key = 'down';
    (await disref.lock(key).acquire()).release().catch(() => undefined);
    // Two of three primaries: no majority is left to elect their replicas, the cluster is down.
    const primaries = await cluster.primaries();
    const holder = await cluster.primaryOf(slotOf(key));
    const stopped = [holder, primaries.find((node) => node !== holder)];
    for (const node of stopped) await node?.server.stop();
    const down = await timed(disref.lock(key).tryAcquire());
    assert.ok(
      down.error instanceof BackendError,
      `got ${String(down.error)} / ${down.value === null ? 'null' : typeof down.value}`,
    );
    assert.match(down.error.message, /redis-cluster:\/\//);
    assert.ok(down.ms < 6_000, `BackendError after ${down.ms.toFixed(0)} ms`);
    for (const node of stopped) await node?.server.restart();
    await cluster.waitUntilHealthy(cluster.failoverBound);
    // The restarted primaries lost their data: their slots wait out maxTtl, then grant.
    const back = await timed(disref.lock(key).acquire({ timeout: 15_000 }));
    assert.equal(back.error, undefined, String(back.error));
    await back.value?.release();
  });
});
