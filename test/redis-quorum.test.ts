/**
 * redis-quorum:// beyond the conformance suite: what a quorum is for. With
 * one of three servers stopped or frozen (SIGSTOP), locks still work and
 * stay exclusive across OS processes; with two gone, acquire fails with a
 * BackendError in bounded time and recovers when they return; fences keep
 * increasing when the majority changes and after servers lost their data;
 * references are refused. Five servers tolerate two failures, not three.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackendError,
  connect,
  InvalidArgumentError,
  type ConnectOptions,
  type Disref,
  type Lease,
} from '../src/index.js';
import { parseStoreUrl } from '../src/config.js';
import { lockKeys } from '../src/backends/redis/keys.js';
import { aliveAfter } from './harness/alive-after.js';
import { RedisServerSet } from './harness/redis-set-target.js';
import { redisUnavailable } from './harness/servers.js';
import { checkExclusiveAcrossProcesses } from './harness/set-workers.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the redis-quorum tests: ${unavailable} ***\n`);
}
const skip = !requireServers && unavailable !== undefined;

describe('redis-quorum:// URLs', () => {
  it('needs at least three distinct servers, and keeps the database', () => {
    assert.throws(() => parseStoreUrl('redis-quorum://h1:1,h2:2'), InvalidArgumentError);
    assert.throws(() => parseStoreUrl('redis-quorum://h1:1,h2:2,H1:1'), /each server once/);
    assert.throws(() => parseStoreUrl('redis-quorum://'), InvalidArgumentError);
    assert.throws(() => parseStoreUrl('redis-quorum://h1,h2,h3/x'), /database number/);
    assert.deepEqual(parseStoreUrl('redis-quorum://u:p@h1,h2:7000,[::1]:7001/3'), {
      scheme: 'redis-quorum',
      servers: [
        { host: 'h1', port: 6379 },
        { host: 'h2', port: 7000 },
        { host: '::1', port: 7001 },
      ],
      username: 'u',
      password: 'p',
      database: 3,
    });
  });
});

describe('redis quorum (3 servers)', { skip }, () => {
  let set: RedisServerSet;
  const open: Disref[] = [];
  let namespaces = 0;

  /** `count` instances in a fresh namespace (unless `namespace` is given). */
  async function instances(
    count: number,
    options: Partial<ConnectOptions> = {},
  ): Promise<Disref[]> {
    const namespace = options.namespace ?? `q${String(process.pid)}-${String(++namespaces)}`;
    await set.markFresh(namespace);
    const made = await Promise.all(
      Array.from({ length: count }, () =>
        connect({ onError: () => undefined, ...options, namespace, url: set.url('redis-quorum') }),
      ),
    );
    open.push(...made);
    return made;
  }

  /** Runs `fn` with servers `indexes` stopped (SIGKILL) or frozen (SIGSTOP), then brings them back. */
  async function without(
    indexes: readonly number[],
    how: 'stopped' | 'frozen',
    fn: () => Promise<void>,
  ): Promise<void> {
    const servers = indexes.map((index) => {
      const server = set.servers[index];
      assert.ok(server !== undefined);
      return server;
    });
    if (how === 'stopped') await Promise.all(servers.map((server) => server.stop()));
    else for (const server of servers) server.pause();
    try {
      await fn();
    } finally {
      if (how === 'stopped') await Promise.all(servers.map((server) => server.restart()));
      else for (const server of servers) server.resume();
    }
  }

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    set = await RedisServerSet.start(3);
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    await set.dispose();
  });

  it('refuses references, naming the backend and the feature', async () => {
    const [disref] = await instances(1);
    assert.ok(disref !== undefined);
    await assert.rejects(disref.reference('record:1'), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.match(error.message, /redis-quorum backend/);
      assert.match(error.message, /reference counting/);
      return true;
    });
    assert.throws(() => disref.lock('k', { fair: true }), /redis-quorum backend cannot queue/);
  });

  for (const how of ['stopped', 'frozen'] as const) {
    it(`keeps 4 processes x 40 increments exclusive with one server ${how}`, async () => {
      const namespace = `q-processes-${how}`;
      await set.markFresh(namespace);
      const counter = set.admins[0];
      const counterServer = set.servers[0];
      assert.ok(counter !== undefined && counterServer !== undefined);
      await without([2], how, () =>
        checkExclusiveAcrossProcesses({
          url: set.url('redis-quorum'),
          counterUrl: counterServer.url,
          counter,
          namespace,
          key: 'shared-counter',
          workers: 4,
          iterations: 40,
        }),
      );
    });
  }

  it('with one server frozen, an uncontended lock does not wait for it', async () => {
    const [disref] = await instances(1);
    assert.ok(disref !== undefined);
    await without([1], 'frozen', async () => {
      const started = performance.now();
      for (let i = 0; i < 20; i++) {
        const lease = await disref.lock('quick').acquire({ timeout: 5_000 });
        await lease.extend();
        assert.equal(await lease.release(), true);
      }
      const elapsed = performance.now() - started;
      // Waiting for the frozen server would cost 2 s per operation (two minutes here).
      assert.ok(elapsed < 3_000, `20 acquire/extend/release took ${elapsed.toFixed(0)} ms`);
    });
  });

  it('keeps a lease alive, released and waking waiters when a server stops under it', async () => {
    const [a, b] = await instances(2);
    assert.ok(a !== undefined && b !== undefined);
    const lease = await a.lock('held', { ttl: 5_000 }).acquire();
    await without([0], 'stopped', async () => {
      await lease.extend();
      assert.equal(await b.lock('held').tryAcquire(), null, 'two holders');
      let releasedAt = 0;
      setTimeout(() => {
        releasedAt = performance.now();
        void lease.release();
      }, 100);
      const next = await b.lock('held').acquire({ timeout: 5_000 });
      const latency = performance.now() - releasedAt;
      assert.ok(
        releasedAt > 0 && latency < 900,
        `woken ${latency.toFixed(0)} ms after the release`,
      );
      assert.ok(next.fence > lease.fence);
      await next.release();
    });
  });

  for (const how of ['stopped', 'frozen'] as const) {
    it(`fails with a BackendError in bounded time with two servers ${how}, and recovers`, async () => {
      const [disref] = await instances(1, { maxTtl: 1_000 });
      assert.ok(disref !== undefined);
      await without([1, 2], how, async () => {
        const started = performance.now();
        await assert.rejects(disref.lock('gone').acquire(), (error: unknown) => {
          assert.ok(error instanceof BackendError, String(error));
          assert.equal(error.key, 'gone');
          assert.match(error.address, /^redis-quorum:\/\//);
          assert.match(error.message, /needs 2 of 3 servers, but 2 failed/);
          for (const index of [1, 2]) {
            assert.ok(error.message.includes(`:${String(set.servers[index]?.port)} (`));
          }
          return true;
        });
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 6_000, `failed after ${elapsed.toFixed(0)} ms`);
      });
      // Stopped servers came back empty, so they hold back grants for maxTtl (1 s here).
      const lease = await disref.lock('gone').acquire({ timeout: 10_000 });
      await lease.release();
    });
  }

  it('keeps fences increasing when the next majority lacks the member whose clock ran ahead', async () => {
    const [disref] = await instances(1);
    assert.ok(disref !== undefined);
    // Server 0 behaves as if its clock ran an hour ahead: its fences are far above the others'.
    const ahead = (Date.now() + 3_600_000) * 1000;
    await set.admins[0]?.set(
      lockKeys(disref.namespace, 'skewed').fence,
      String(ahead),
      'PX',
      600_000,
    );
    // Server 2 sits this one out, so the majority that grants it includes server 0.
    const granted: Lease[] = [];
    await without([2], 'frozen', async () => {
      granted.push(await disref.lock('skewed').acquire({ timeout: 5_000 }));
    });
    const [first] = granted;
    assert.ok(first !== undefined && first.fence > ahead, `fence ${String(first?.fence)}`);
    await first.release();
    await without([0], 'stopped', async () => {
      const second = await disref.lock('skewed').acquire({ timeout: 5_000 });
      // Without raising the others' fence keys, they would hand out about now × 1000.
      assert.ok(second.fence > first.fence, `${String(second.fence)} after ${String(first.fence)}`);
      await second.release();
    });
  });

  it('keeps fences increasing after servers lost their data (one, then all three)', async () => {
    const [disref] = await instances(1, { maxTtl: 1_000 });
    assert.ok(disref !== undefined);
    const fences: number[] = [];
    const take = async (): Promise<void> => {
      const lease = await disref.lock('restarted').acquire({ timeout: 10_000 });
      fences.push(lease.fence);
      await lease.release();
    };
    await take();
    await set.servers[1]?.restart();
    await take(); // servers 0 and 2 form the majority; server 1 sits out its quarantine
    await Promise.all(set.servers.map((server) => server.restart()));
    const lostAt = performance.now();
    await take(); // every fence key is gone: fences come from the servers' clocks
    assert.ok(performance.now() - lostAt >= 900, 'granted before the quarantine ended');
    for (let i = 1; i < fences.length; i++) {
      assert.ok((fences[i] ?? 0) > (fences[i - 1] ?? Infinity), `fences ${fences.join(', ')}`);
    }
  });

  it('leaves no timer or connection behind after close(), even with a server frozen', async () => {
    // Heartbeats of instances left open by earlier tests would be counted: close them first.
    await Promise.all(open.splice(0).map((disref) => disref.close()));
    const namespace = `q-leaks-${String(process.pid)}`;
    await set.markFresh(namespace);
    const alive = await aliveAfter(async () => {
      const [a, b] = await Promise.all(
        [0, 1].map(() =>
          connect({ url: set.url('redis-quorum'), namespace, onError: () => undefined }),
        ),
      );
      assert.ok(a !== undefined && b !== undefined);
      await without([2], 'frozen', async () => {
        const held = await a.lock('k', { ttl: 300 }).acquire();
        const waiting = b.lock('k').acquire({ timeout: 5_000 }); // subscribes on every server
        await sleep(50);
        await held.release();
        await (await waiting).release();
        await a.lock('k', { ttl: 200 }).using(() => sleep(150)); // extended under way
        await Promise.all([a.close(), b.close()]);
      });
    });
    assert.deepEqual(alive, [], 'resources still alive after close()');
  });

  it('inspect() and status show the holder a majority agrees on', async () => {
    const [a] = await instances(1);
    assert.ok(a !== undefined);
    const lease = await a.lock('shown', { ttl: 5_000 }).acquire();
    const state = await a.backend.inspect('shown');
    assert.equal(state?.holders.length, 1);
    // A member that granted after the majority had may hold a larger fence for it.
    assert.ok((state?.holders[0]?.fence ?? 0) >= lease.fence);
    assert.ok((state?.holders[0]?.ttlLeft ?? 0) > 4_000);
    const snapshot = await a.backend.snapshot();
    assert.deepEqual(
      snapshot.locks.map((lock) => [lock.key, lock.holders[0]?.fence]),
      [['shown', state?.holders[0]?.fence]],
    );
    assert.ok(snapshot.processes.some((process) => process.id === a.id));
    await lease.release();
    assert.equal(await a.backend.inspect('shown'), null);
  });
});

describe('redis quorum (5 servers)', { skip }, () => {
  let set: RedisServerSet;
  const open: Disref[] = [];

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    set = await RedisServerSet.start(5);
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    await set.dispose();
  });

  it('tolerates two stopped servers with 60 contending callers, not three', async () => {
    const namespace = `q5-${String(process.pid)}`;
    await set.markFresh(namespace);
    const disrefs = await Promise.all(
      Array.from({ length: 3 }, () =>
        connect({ url: set.url('redis-quorum'), namespace, onError: () => undefined }),
      ),
    );
    open.push(...disrefs);
    const [third, fourth, fifth] = set.servers.slice(2);
    assert.ok(third !== undefined && fourth !== undefined && fifth !== undefined);
    await Promise.all([fourth.stop(), fifth.stop()]);
    let inside = 0;
    let count = 0;
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const disref = disrefs[i % disrefs.length];
        assert.ok(disref !== undefined);
        await disref.lock('five', { ttl: 10_000 }).using(async () => {
          inside += 1;
          assert.equal(inside, 1, 'two callers inside the lock');
          const read = count;
          await sleep(1);
          count = read + 1;
          inside -= 1;
        });
      }),
    );
    assert.equal(count, 60);
    await third.stop();
    await assert.rejects(disrefs[0]?.lock('five').acquire() ?? Promise.resolve(), (error) => {
      assert.ok(error instanceof BackendError);
      assert.match(error.message, /needs 3 of 5 servers, but 3 failed/);
      return true;
    });
  });
});
