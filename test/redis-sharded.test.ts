/**
 * redis-sharded:// beyond the conformance suite: keys spread over every
 * server and stay where they are (whatever the list order) when a server is
 * removed or added, except the removed server's own share; a shard that is
 * down fails only its keys, with a BackendError naming that server; a shard
 * that lost its registry makes the process take a new identity everywhere,
 * so its references on the other shards are recovered; and the lock stays
 * exclusive across OS processes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackendError,
  connect,
  InvalidArgumentError,
  type ConnectOptions,
  type Disref,
} from '../src/index.js';
import { parseStoreUrl } from '../src/config.js';
import { lockKeys } from '../src/backends/redis/keys.js';
import type { RedisServerSet as ServerSetAddress } from '../src/backends/composite/redis-members.js';
import { createRedisShardedBackend } from '../src/backends/sharded/redis-sharded.js';
import { murmur3 } from '../src/backends/sharded/rendezvous.js';
import type { ShardedBackend } from '../src/backends/sharded/sharded-backend.js';
import { aliveAfter } from './harness/alive-after.js';
import { RedisServerSet } from './harness/redis-set-target.js';
import { redisUnavailable } from './harness/servers.js';
import { checkExclusiveAcrossProcesses } from './harness/set-workers.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the redis-sharded tests: ${unavailable} ***\n`);
}
const skip = !requireServers && unavailable !== undefined;

/** A sharded backend over `ports` on 127.0.0.1, for routing questions (it opens no connection). */
function routing(ports: readonly number[]): ShardedBackend {
  const address = parseStoreUrl(
    `redis-sharded://${ports.map((port) => `127.0.0.1:${String(port)}`).join(',')}`,
  ) as ServerSetAddress;
  return createRedisShardedBackend(address, { namespace: 'routing', maxTtl: 60_000 });
}

const KEYS = Array.from({ length: 3000 }, (_, i) => `order:${String(i)}`);

describe('redis-sharded:// URLs and routing', () => {
  it('takes one or more distinct servers and a database', () => {
    assert.deepEqual(parseStoreUrl('redis-sharded://h1'), {
      scheme: 'redis-sharded',
      servers: [{ host: 'h1', port: 6379 }],
      username: undefined,
      password: undefined,
      database: 0,
    });
    assert.equal((parseStoreUrl('redis-sharded://h1:1,h2:2/4') as ServerSetAddress).database, 4);
    assert.throws(() => parseStoreUrl('redis-sharded://h1:1,h1:1'), InvalidArgumentError);
    assert.throws(() => parseStoreUrl('redis-sharded://'), InvalidArgumentError);
  });

  it('scores keys with MurmurHash3 (x86, 32-bit), as every process must', () => {
    const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
    // Reference values of the published algorithm (SMHasher's MurmurHash3_x86_32).
    assert.equal(murmur3(bytes(''), 1), 0x514e28b7);
    assert.equal(murmur3(bytes('abc'), 0), 0xb3dd93fa);
    assert.equal(murmur3(bytes('Hello, world!'), 1234), 0xfaf6cdb3);
    assert.equal(
      murmur3(bytes('The quick brown fox jumps over the lazy dog'), 0x9747b28c),
      0x2fa826cd,
    );
  });

  it('spreads keys evenly, and routes alike whatever the order of the list', () => {
    const three = routing([7001, 7002, 7003]);
    const reversed = routing([7003, 7002, 7001]);
    const counts = new Map<string, number>();
    for (const key of KEYS) {
      const shard = three.shardFor(key);
      assert.equal(reversed.shardFor(key).id, shard.id);
      counts.set(shard.id, (counts.get(shard.id) ?? 0) + 1);
    }
    assert.equal(counts.size, 3);
    for (const [id, count] of counts) {
      // 1000 expected each; a share off by 15 % would mean a biased hash.
      assert.ok(count > 850 && count < 1150, `${id} holds ${String(count)} of 3000 keys`);
    }
  });

  it('moves only the removed server’s keys, and only about a quarter to an added one', () => {
    const three = routing([7001, 7002, 7003]);
    const two = routing([7001, 7002]);
    const four = routing([7001, 7002, 7003, 7004]);
    let toAdded = 0;
    for (const key of KEYS) {
      const before = three.shardFor(key).id;
      if (before !== '127.0.0.1:7003') {
        assert.equal(two.shardFor(key).id, before, `${key} moved though its server stayed`);
      }
      const after = four.shardFor(key).id;
      if (after !== before) {
        assert.equal(after, '127.0.0.1:7004', `${key} moved between two old servers`);
        toAdded += 1;
      }
    }
    assert.ok(
      toAdded > 600 && toAdded < 900,
      `${String(toAdded)} of 3000 keys moved to the new server`,
    );
  });
});

describe('redis sharded (3 servers)', { skip }, () => {
  let set: RedisServerSet;
  const open: Disref[] = [];
  let namespaces = 0;

  async function instances(
    count: number,
    options: Partial<ConnectOptions> = {},
    url = (): string => set.url('redis-sharded'),
  ): Promise<Disref[]> {
    const namespace = options.namespace ?? `s${String(process.pid)}-${String(++namespaces)}`;
    await set.markFresh(namespace);
    const made = await Promise.all(
      Array.from({ length: count }, () =>
        connect({ onError: () => undefined, ...options, namespace, url: url() }),
      ),
    );
    open.push(...made);
    return made;
  }

  /** Index in `set.servers` of the shard that holds `key` for `disref`. */
  function shardIndex(disref: Disref, key: string): number {
    const id = (disref.backend as ShardedBackend).shardFor(key).id;
    return set.servers.findIndex((server) => id === `127.0.0.1:${String(server.port)}`);
  }

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    set = await RedisServerSet.start(3);
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    await set.dispose();
  });

  it('stores each lock on the server its key hashes to, over all servers', async () => {
    const [disref] = await instances(1);
    assert.ok(disref !== undefined);
    const keys = KEYS.slice(0, 90);
    const leases = await Promise.all(keys.map((key) => disref.lock(key).acquire()));
    const perServer = [0, 0, 0];
    for (const key of keys) {
      const found: number[] = [];
      for (const [index, admin] of set.admins.entries()) {
        if ((await admin.exists(lockKeys(disref.namespace, key).lock)) === 1) found.push(index);
      }
      assert.deepEqual(found, [shardIndex(disref, key)], `${key} is stored on ${found.join()}`);
      perServer[found[0] ?? 0] = (perServer[found[0] ?? 0] ?? 0) + 1;
    }
    assert.ok(
      perServer.every((count) => count >= 15),
      `keys per server: ${perServer.join(', ')}`,
    );
    await Promise.all(leases.map((lease) => lease.release()));
  });

  it('agrees on the holder of a key with a process that lists the servers in another order, or lacks another server', async () => {
    const [a] = await instances(1);
    assert.ok(a !== undefined);
    const ports = set.servers.map((server) => `127.0.0.1:${String(server.port)}`);
    const leases = await Promise.all(KEYS.slice(0, 30).map((key) => a.lock(key).acquire()));
    const [reversed] = await instances(
      1,
      { namespace: a.namespace },
      () => `redis-sharded://${[...ports].reverse().join(',')}`,
    );
    assert.ok(reversed !== undefined);
    for (const lease of leases) assert.equal(await reversed.lock(lease.key).tryAcquire(), null);
    const removed = shardIndex(a, 'order:0');
    const [fewer] = await instances(
      1,
      { namespace: a.namespace },
      () => `redis-sharded://${ports.filter((_, index) => index !== removed).join(',')}`,
    );
    assert.ok(fewer !== undefined);
    for (const lease of leases) {
      if (shardIndex(a, lease.key) !== removed) {
        assert.equal(await fewer.lock(lease.key).tryAcquire(), null, `${lease.key} moved`);
      }
    }
    await Promise.all(leases.map((lease) => lease.release()));
  });

  it('fails only the keys of a stopped shard, with a BackendError naming it, and recovers', async () => {
    const [disref] = await instances(1, { maxTtl: 1_000 });
    assert.ok(disref !== undefined);
    const down = 1;
    const server = set.servers[down];
    assert.ok(server !== undefined);
    const onDown = KEYS.find((key) => shardIndex(disref, key) === down) ?? '';
    const elsewhere = KEYS.filter((key) => shardIndex(disref, key) !== down).slice(0, 2);
    await server.stop();
    try {
      await assert.rejects(disref.lock(onDown).acquire(), (error: unknown) => {
        assert.ok(error instanceof BackendError, String(error));
        assert.equal(error.address, server.url);
        assert.equal(error.key, onDown);
        return true;
      });
      for (const key of elsewhere) {
        const lease = await disref.lock(key).acquire({ timeout: 1_000 });
        assert.equal(await lease.release(), true);
      }
      const resource = elsewhere[0] ?? '';
      const reference = await disref.reference(resource);
      assert.equal(await reference.count(), 1);
      assert.equal(await reference.dereference(() => undefined), true);
      const status = await disref.backend.snapshot();
      assert.match(
        status.incomplete ?? '',
        new RegExp(`${String(server.port)}.*could not be read`),
      );
    } finally {
      await server.restart();
    }
    // It came back empty: its keys wait out the quarantine (maxTtl, 1 s here), then work.
    const lease = await disref.lock(onDown).acquire({ timeout: 10_000 });
    await lease.release();
  });

  it('a shard that lost its registry makes the process a new identity on every shard, and its references elsewhere are recovered', async () => {
    const [holder, survivor] = await instances(2, {
      heartbeatInterval: 50,
      processTtl: 250,
      maxTtl: 1_000,
    });
    assert.ok(holder !== undefined && survivor !== undefined);
    const completed: string[] = [];
    survivor.onComplete('job', (resource) => {
      completed.push(resource);
    });
    const lost = 2;
    const resource =
      Array.from({ length: 50 }, (_, i) => `job:${String(i)}`).find(
        (name) => shardIndex(holder, name) !== lost,
      ) ?? '';
    const reference = await holder.reference(resource);
    const oldId = holder.id;
    await set.servers[lost]?.restart(); // its process registry is gone
    const deadline = Date.now() + 5_000;
    while (!completed.includes(resource) && Date.now() < deadline) await sleep(20);
    assert.notEqual(holder.id, oldId, 'the holder kept an identity one shard no longer knows');
    assert.equal(reference.held, false);
    assert.deepEqual(completed, [resource], 'the reference on another shard was not recovered');
  });

  it('leaves no timer or connection behind after close()', async () => {
    // Heartbeats of instances left open by earlier tests would be counted: close them first.
    await Promise.all(open.splice(0).map((disref) => disref.close()));
    const namespace = `s-leaks-${String(process.pid)}`;
    await set.markFresh(namespace);
    const alive = await aliveAfter(async () => {
      const [a, b] = await Promise.all(
        [0, 1].map(() =>
          connect({ url: set.url('redis-sharded'), namespace, onError: () => undefined }),
        ),
      );
      assert.ok(a !== undefined && b !== undefined);
      const held = await Promise.all(KEYS.slice(0, 6).map((key) => a.lock(key).acquire()));
      const waiting = b.lock(KEYS[0] ?? '').acquire({ timeout: 5_000 });
      await sleep(50);
      await Promise.all(held.map((lease) => lease.release()));
      await (await waiting).release();
      const reference = await b.reference('job:leaks');
      await reference.dereference(() => undefined);
      await Promise.all([a.close(), b.close()]);
    });
    assert.deepEqual(alive, [], 'resources still alive after close()');
  });

  it('keeps 3 processes x 30 increments exclusive', async () => {
    const namespace = `s-processes-${String(process.pid)}`;
    await set.markFresh(namespace);
    const counter = set.admins[0];
    const counterServer = set.servers[0];
    assert.ok(counter !== undefined && counterServer !== undefined);
    await checkExclusiveAcrossProcesses({
      url: set.url('redis-sharded'),
      counterUrl: counterServer.url,
      counter,
      namespace,
      key: 'shared-counter',
      workers: 3,
      iterations: 30,
    });
  });
});
