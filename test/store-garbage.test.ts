/**
 * A store that answers garbage on keys disref owns: another program (or a
 * person with redis-cli) wrote a value of the wrong type, a non-numeric
 * fence, a truncated record or binary bytes where disref keeps its state.
 * The public API must answer with a named error (`BackendError`) whose
 * message names the key and says what to do, never crash the process, never
 * grant a lease on state it cannot read, and keep every other key working.
 * Real `redis-server` and `memcached` processes, started by the harness.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { BackendError, connect, type Disref } from '../src/index.js';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh as markMemcachedFresh } from '../src/backends/memcached/epoch-guard.js';
import { itemName } from '../src/backends/memcached/keys.js';
import {
  heldKey,
  lockKeys,
  markerKey,
  processesKey,
  referenceKey,
} from '../src/backends/redis/keys.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
/** Slow heartbeats: nothing here depends on liveness timing. */
const RELAXED = { heartbeatInterval: 1_000, processTtl: 10_000 } as const;
const BINARY = Buffer.from([0xff, 0x00, 0xfe, 0x0a, 0x80, 0x7f]);

let namespaceCounter = 0;
function freshNamespace(prefix: string): string {
  namespaceCounter += 1;
  return `${prefix}${String(process.pid)}-${String(namespaceCounter)}`;
}

/** Asserts that `promise` rejects with a BackendError naming `name` (a store key) and what to do. */
async function rejectsNaming(promise: Promise<unknown>, name: string, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof BackendError, `${what}: ${String(error)}`);
    assert.equal(error.code, 'ERR_DISREF_BACKEND');
    assert.ok(error.message.includes(name), `${what}: the message names ${name}: ${error.message}`);
    assert.match(error.message, /delete|namespace/i, `${what}: the message says what to do`);
    return true;
  });
}

/** Other keys keep working on the same instance: a lock, and a reference with its completion. */
async function stillWorks(disref: Disref): Promise<void> {
  const lease = await disref.lock('healthy').tryAcquire();
  assert.ok(lease !== null, 'a healthy lock is granted');
  await lease.extend();
  await lease.release();
  const ref = await disref.reference('healthy:1');
  await ref.incrementTimesModified();
  assert.equal(await ref.count(), 1);
  assert.equal(await ref.dereference(() => undefined), true);
}

/** No uncaught exception or unhandled rejection while `body` runs (and shortly after). */
async function noCrash(body: () => Promise<void>): Promise<void> {
  const crashes: unknown[] = [];
  const record = (error: unknown): void => {
    crashes.push(error);
  };
  process.on('uncaughtException', record);
  process.on('unhandledRejection', record);
  try {
    await body();
    await sleep(50);
  } finally {
    process.off('uncaughtException', record);
    process.off('unhandledRejection', record);
  }
  assert.deepEqual(crashes, [], 'no uncaught exception or unhandled rejection');
}

describe('garbage in the store: redis', { skip: skipReason(redisUnavailable()) }, () => {
  let server: RedisServer;
  let admin: Redis;
  const open: Disref[] = [];
  before(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.port, '127.0.0.1');
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    admin.disconnect();
    await server.dispose();
  });

  const join = async (namespace = freshNamespace('g')): Promise<Disref> => {
    await markNamespaceFresh(admin, namespace);
    const disref = await connect({ url: server.url, namespace, ...RELAXED });
    open.push(disref);
    return disref;
  };

  /** Each way to spoil one key of lock `bad`; `name` is the key spoiled. */
  const lockGarbage: {
    what: string;
    spoil: (namespace: string) => Promise<string>;
  }[] = [
    {
      what: 'the lock hash is a list',
      spoil: async (ns) => {
        const { lock } = lockKeys(ns, 'bad');
        await admin.rpush(lock, 'x', 'y');
        return lock;
      },
    },
    {
      what: 'the lock hash is a string of binary bytes',
      spoil: async (ns) => {
        const { lock } = lockKeys(ns, 'bad');
        await admin.set(lock, BINARY);
        return lock;
      },
    },
    {
      what: 'a holder entry of the lock hash is unparsable',
      spoil: async (ns) => {
        const { lock } = lockKeys(ns, 'bad');
        await admin.hset(lock, 'h:intruder', 'not a holder');
        return lock;
      },
    },
    {
      what: 'a holder entry has a non-numeric expiry',
      spoil: async (ns) => {
        const { lock } = lockKeys(ns, 'bad');
        await admin.hset(lock, 'h:intruder', 'exclusive 12 soon');
        return lock;
      },
    },
    {
      what: 'a holder entry is binary bytes',
      spoil: async (ns) => {
        const { lock } = lockKeys(ns, 'bad');
        await admin.hset(lock, 'h:intruder', BINARY);
        return lock;
      },
    },
    {
      what: 'the fence is not a number',
      spoil: async (ns) => {
        const { fence } = lockKeys(ns, 'bad');
        await admin.set(fence, 'not-a-number');
        return fence;
      },
    },
    {
      what: 'the fence is a hash',
      spoil: async (ns) => {
        const { fence } = lockKeys(ns, 'bad');
        await admin.hset(fence, 'f', '1');
        return fence;
      },
    },
    {
      what: 'the fence is beyond exact integers',
      spoil: async (ns) => {
        const { fence } = lockKeys(ns, 'bad');
        await admin.set(fence, '1e300');
        return fence;
      },
    },
  ];

  for (const { what, spoil } of lockGarbage) {
    it(`lock: ${what}`, async () => {
      await noCrash(async () => {
        const disref = await join();
        const name = await spoil(disref.namespace);
        const lock = disref.lock('bad', { ttl: 5_000 });
        await rejectsNaming(lock.tryAcquire(), name, 'tryAcquire');
        await rejectsNaming(disref.lock('bad', { timeout: 300 }).acquire(), name, 'acquire');
        await stillWorks(disref);
      });
    });
  }

  it('lock: the waiter queue is a string, under a holder (the waiting path reads it)', async () => {
    await noCrash(async () => {
      const disref = await join();
      const holder = await disref.lock('bad').tryAcquire();
      assert.ok(holder !== null);
      const { queue } = lockKeys(disref.namespace, 'bad');
      await admin.set(queue, 'garbage');
      await rejectsNaming(disref.lock('bad', { timeout: 300 }).acquire(), queue, 'acquire');
      // Releasing the only holder needs no waiter: the lock is freed despite the queue.
      await holder.release();
      await admin.del(queue);
      await stillWorks(disref);
    });
  });

  it('lock: a held lease whose hash was replaced by garbage cannot be extended or released', async () => {
    await noCrash(async () => {
      const disref = await join();
      const lease = await disref.lock('bad', { ttl: 5_000 }).acquire();
      const { lock } = lockKeys(disref.namespace, 'bad');
      await admin.del(lock);
      await admin.rpush(lock, 'garbage');
      await rejectsNaming(lease.extend(), lock, 'extend');
      await rejectsNaming(lease.release(), lock, 'release');
      await stillWorks(disref);
    });
  });

  it('lock: a namespace marker of the wrong type stops grants with an error naming it', async () => {
    await noCrash(async () => {
      const disref = await join();
      const marker = markerKey(disref.namespace);
      await admin.del(marker);
      await admin.set(marker, 'garbage');
      await rejectsNaming(disref.lock('any').tryAcquire(), marker, 'tryAcquire');
      await admin.del(marker);
      await markNamespaceFresh(admin, disref.namespace);
      await stillWorks(disref);
    });
  });

  it('lock: garbage published on the wake-up channel wakes nobody wrongly', async () => {
    await noCrash(async () => {
      const disref = await join();
      const other = await join(disref.namespace);
      const holder = await disref.lock('bad').acquire();
      const waiting = other.lock('bad', { timeout: 5_000 }).acquire();
      await sleep(100);
      const { channel } = lockKeys(disref.namespace, 'bad');
      await admin.publish(channel, 'granted nobody 12');
      await admin.publish(channel, BINARY);
      await admin.publish(channel, 'granted');
      await sleep(100);
      assert.equal((await disref.backend.inspect('bad'))?.holders.length, 1, 'still one holder');
      await holder.release();
      const lease = await waiting;
      assert.ok(lease.fence > holder.fence);
      await lease.release();
    });
  });

  /** Each way to spoil the hash of resource `bad:1`. */
  const referenceGarbage: { what: string; spoil: (ref: string) => Promise<void> }[] = [
    {
      what: 'the resource hash is a list',
      spoil: async (ref) => {
        await admin.rpush(ref, 'garbage');
      },
    },
    {
      what: 'the resource hash is binary bytes',
      spoil: async (ref) => {
        await admin.set(ref, BINARY);
      },
    },
  ];

  for (const { what, spoil } of referenceGarbage) {
    it(`reference: ${what}`, async () => {
      await noCrash(async () => {
        const disref = await join();
        const other = await join(disref.namespace);
        const ref = await disref.reference('bad:1');
        const name = referenceKey(disref.namespace, 'bad:1');
        await admin.del(name);
        await spoil(name);
        await rejectsNaming(other.reference('bad:1'), name, 'reference');
        await rejectsNaming(ref.count(), name, 'count');
        await rejectsNaming(ref.timesModified(), name, 'timesModified');
        await rejectsNaming(ref.incrementTimesModified(), name, 'incrementTimesModified');
        let ran = false;
        await rejectsNaming(
          ref.dereference(() => {
            ran = true;
          }),
          name,
          'dereference',
        );
        assert.equal(ran, false, 'no completion on garbage');
        await other.recover(); // recovery meets the same key: reported, no crash
        await stillWorks(other);
        await admin.del(name);
      });
    });
  }

  it('reference: a non-numeric timesModified is an error, not a number', async () => {
    await noCrash(async () => {
      const disref = await join();
      const ref = await disref.reference('bad:2');
      const name = referenceKey(disref.namespace, 'bad:2');
      await admin.hset(name, 'modified', 'many');
      await rejectsNaming(ref.timesModified(), name, 'timesModified');
      await rejectsNaming(ref.incrementTimesModified(), name, 'incrementTimesModified');
      await admin.hset(name, 'modified', '2');
      assert.equal(await ref.incrementTimesModified(), 3);
      assert.equal(await ref.dereference(() => undefined), true);
      await stillWorks(disref);
    });
  });

  it("reference: a process's held set of the wrong type", async () => {
    await noCrash(async () => {
      const disref = await join();
      const held = heldKey(disref.namespace, disref.id);
      await admin.set(held, 'garbage');
      await rejectsNaming(disref.reference('bad:3'), held, 'reference');
      await admin.del(held);
      await stillWorks(disref);
    });
  });

  it('connect: a process registry of the wrong type fails connect() with an error naming it', async () => {
    await noCrash(async () => {
      const namespace = freshNamespace('g');
      await markNamespaceFresh(admin, namespace);
      await admin.set(processesKey(namespace), 'garbage');
      await rejectsNaming(
        connect({ url: server.url, namespace, ...RELAXED }),
        processesKey(namespace),
        'connect',
      );
    });
  });

  it('status: a snapshot lists what it can read and names the keys it cannot', async () => {
    await noCrash(async () => {
      const disref = await join();
      const lease = await disref.lock('fine').acquire();
      const ref = await disref.reference('fine:1');
      const { lock } = lockKeys(disref.namespace, 'bad');
      const resource = referenceKey(disref.namespace, 'bad:1');
      await admin.rpush(lock, 'garbage');
      await admin.set(resource, BINARY);
      const snapshot = await disref.backend.snapshot();
      assert.deepEqual(
        snapshot.locks.map((state) => state.key),
        ['fine'],
      );
      assert.deepEqual(
        snapshot.references.map((state) => state.resource),
        ['fine:1'],
      );
      assert.ok(snapshot.incomplete !== undefined, 'the snapshot says it is incomplete');
      assert.ok(snapshot.incomplete.includes(lock), snapshot.incomplete);
      assert.ok(snapshot.incomplete.includes(resource), snapshot.incomplete);
      await lease.release();
      assert.equal(await ref.dereference(() => undefined), true);
    });
  });
});

describe('garbage in the store: memcached', { skip: skipReason(memcachedUnavailable()) }, () => {
  let server: MemcachedServer;
  let admin: MemcachedClient;
  const open: Disref[] = [];
  before(async () => {
    server = await MemcachedServer.start();
    admin = new MemcachedClient({ servers: [{ host: '127.0.0.1', port: server.port }] });
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    admin.close();
    await server.stop();
  });

  const join = async (namespace = freshNamespace('g')): Promise<Disref> => {
    await markMemcachedFresh(admin, namespace);
    const disref = await connect({ url: `memcached://${server.hostPort}`, namespace, ...RELAXED });
    open.push(disref);
    return disref;
  };
  /** Writes `value` to item `name` with a plain `ms`, as another application would. */
  const writeRaw = async (name: string, value: string | Buffer): Promise<void> => {
    const [reply] = await admin.meta(admin.serverFor(name), [
      { command: 'ms', key: name, value, flags: ['T60'] },
    ]);
    assert.equal(reply.status, 'HD');
  };
  /** A record disref really wrote, cut in half (a torn or truncated write). */
  const truncated = async (name: string): Promise<Buffer> => {
    const [reply] = await admin.meta(admin.serverFor(name), [
      { command: 'mg', key: name, flags: ['v'] },
    ]);
    assert.ok(reply.value !== undefined, `${name} exists`);
    return reply.value.subarray(0, Math.floor(reply.value.length / 2));
  };

  const lockGarbage: { what: string; item: 'l' | 'f'; value: () => string | Buffer }[] = [
    { what: 'the lock record is not JSON', item: 'l', value: () => 'not json' },
    { what: 'the lock record is binary bytes', item: 'l', value: () => BINARY },
    { what: 'the lock record is JSON of another shape', item: 'l', value: () => '{"f":"x"}' },
    { what: 'the fence counter is not a number', item: 'f', value: () => 'not-a-number' },
    { what: 'the fence counter is binary bytes', item: 'f', value: () => BINARY },
    { what: 'the fence counter is beyond exact integers', item: 'f', value: () => '1e300' },
  ];

  for (const { what, item, value } of lockGarbage) {
    it(`lock: ${what}`, async () => {
      await noCrash(async () => {
        const disref = await join();
        const name = itemName(disref.namespace, item, 'bad');
        await writeRaw(name, value());
        const lock = disref.lock('bad', { ttl: 5_000, timeout: 300 });
        await rejectsNaming(lock.tryAcquire(), name, 'tryAcquire');
        await rejectsNaming(lock.acquire(), name, 'acquire');
        await stillWorks(disref);
      });
    });
  }

  it('lock: a truncated lock record under a held lease: extend and release fail clearly', async () => {
    await noCrash(async () => {
      const disref = await join();
      const lease = await disref.lock('bad', { ttl: 5_000 }).acquire();
      const name = itemName(disref.namespace, 'l', 'bad');
      await writeRaw(name, await truncated(name));
      await rejectsNaming(lease.extend(), name, 'extend');
      await rejectsNaming(lease.release(), name, 'release');
      await rejectsNaming(disref.lock('bad').tryAcquire(), name, 'tryAcquire');
      await stillWorks(disref);
    });
  });

  const referenceGarbage: { what: string; value: (name: string) => Promise<string | Buffer> }[] = [
    { what: 'not JSON', value: () => Promise.resolve('not json') },
    { what: 'binary bytes', value: () => Promise.resolve(BINARY) },
    { what: 'JSON of another shape', value: () => Promise.resolve('{"h":1,"m":"x","a":[]}') },
    { what: 'a truncated record', value: truncated },
  ];

  for (const { what, value } of referenceGarbage) {
    it(`reference: the resource record is ${what}`, async () => {
      await noCrash(async () => {
        const disref = await join();
        const other = await join(disref.namespace);
        const ref = await disref.reference('bad:1');
        const name = itemName(disref.namespace, 'r', 'bad:1');
        await writeRaw(name, await value(name));
        await rejectsNaming(other.reference('bad:1'), name, 'reference');
        await rejectsNaming(ref.count(), name, 'count');
        await rejectsNaming(ref.timesModified(), name, 'timesModified');
        await rejectsNaming(ref.incrementTimesModified(), name, 'incrementTimesModified');
        let ran = false;
        await rejectsNaming(
          ref.dereference(() => {
            ran = true;
          }),
          name,
          'dereference',
        );
        assert.equal(ran, false, 'no completion on garbage');
        await other.recover();
        await stillWorks(other);
      });
    });
  }

  it("reference: a process's held list is garbage", async () => {
    await noCrash(async () => {
      const disref = await join();
      const name = itemName(disref.namespace, 'h', disref.id);
      await writeRaw(name, BINARY);
      await rejectsNaming(disref.reference('bad:3'), name, 'reference');
      await writeRaw(name, '[]');
      await stillWorks(disref);
    });
  });

  it('status: a snapshot does not crash on garbage items', async () => {
    await noCrash(async () => {
      const disref = await join();
      await writeRaw(itemName(disref.namespace, 'l', 'bad'), BINARY);
      await writeRaw(itemName(disref.namespace, 'r', 'bad:1'), 'not json');
      const ref = await disref.reference('fine:1');
      const snapshot = await disref.backend.snapshot();
      assert.ok(snapshot.references.some((state) => state.resource === 'fine:1'));
      assert.equal(await ref.dereference(() => undefined), true);
    });
  });
});

/** `false` when the binary exists (or DISREF_REQUIRE_SERVERS=1, to fail); else why it is skipped. */
function skipReason(unavailable: string | undefined): string | false {
  if (unavailable === undefined || requireServers) return false;
  console.warn(`\n*** SKIPPING store-garbage tests: ${unavailable} ***\n`);
  return unavailable;
}
