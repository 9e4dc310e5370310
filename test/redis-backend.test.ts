/**
 * The Redis backend through `connect()`, against real redis-server processes:
 * fences across FLUSHALL and a real restart, the data-loss quarantine, outages
 * (stopped and frozen servers) and the errors they give, clients passed in,
 * and the shared wake-up connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import {
  BackendError,
  connect,
  InvalidArgumentError,
  LockLostError,
  LockTimeoutError,
  type Disref,
} from '../src/index.js';
import { lockKeys } from '../src/backends/redis/keys.js';
import { LINGER } from '../src/backends/redis/wakeups.js';
import { RedisServer, freePort, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis backend tests: ${unavailable} ***\n`);
}

/** Milliseconds `promise` took to settle, and how. */
async function timed(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await promise;
    return { ms: performance.now() - start, error: undefined };
  } catch (error) {
    return { ms: performance.now() - start, error };
  }
}

/** Number of client connections the server has, the asking one included. */
async function clientCount(admin: Redis): Promise<number> {
  const list = await admin.client('LIST');
  return String(list).trim().split('\n').length;
}

describe('redis backend', { skip: !requireServers && unavailable }, () => {
  let server: RedisServer;
  let admin: Redis;
  const open: Disref[] = [];
  let counter = 0;

  /** Connects to `url` (default: the shared server) in `namespace`, closed after the suite. */
  const make = async (
    namespace: string,
    options: { maxTtl?: number; url?: string } = {},
  ): Promise<Disref> => {
    const disref = await connect({
      url: options.url ?? server.url,
      namespace,
      maxTtl: options.maxTtl,
    });
    open.push(disref);
    return disref;
  };
  const freshNamespace = async (): Promise<string> => {
    counter += 1;
    const namespace = `b${String(counter)}`;
    await markNamespaceFresh(admin, namespace);
    return namespace;
  };

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await RedisServer.start();
    admin = new Redis(server.port, '127.0.0.1');
  });
  after(async () => {
    await Promise.all(open.map((disref) => disref.close()));
    admin.disconnect();
    await server.dispose();
  });

  it('connects from redis:// URLs and refuses what it cannot serve', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    assert.equal(disref.backend.name, 'redis');
    assert.equal(disref.backend.address, `redis://127.0.0.1:${String(server.port)}`);
    assert.equal(disref.backend.capabilities.crossProcess, true);
    const lease = await disref.lock('k').acquire();
    assert.ok(lease.fence > 0);
    await lease.release();
    const [deadA, deadB] = [await freePort(), await freePort()];
    await assert.rejects(
      connect(`redis-cluster://127.0.0.1:${String(deadA)},127.0.0.1:${String(deadB)}`),
      (error: unknown) => {
        assert.ok(error instanceof BackendError, String(error));
        assert.equal(
          error.address,
          `redis-cluster://127.0.0.1:${String(deadA)},127.0.0.1:${String(deadB)}`,
        );
        return true;
      },
    );
    await assert.rejects(connect({ redis: admin, url: server.url }), InvalidArgumentError);
    await assert.rejects(
      connect({ redis: { get: () => undefined } as never }),
      (error: unknown) =>
        error instanceof InvalidArgumentError && error.argument === 'options.redis',
    );
  });

  it('snapshot with a prefix lists what starts with it, even past the listing limit', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    // More locks than a listing holds (10 000), none of them starting with the prefix.
    await admin.eval(
      `for i = 1, 10001 do
         local key = ARGV[1] .. ':{k:bulk-' .. i .. '}:lock'
         redis.call('HSET', key, 'h:s:x', 'exclusive 1 1')
         redis.call('PEXPIRE', key, 60000)
       end`,
      0,
      namespace,
    );
    const long = (start: string): string => `${start}${'x'.repeat(300)}`; // hashed in key names
    const leases = await Promise.all(
      ['wanted:1', long('wanted:'), long('other:')].map((key) => disref.lock(key).acquire()),
    );
    const wanted = await disref.reference('wanted:r');
    const other = await disref.reference(long('other:'));
    const snapshot = await disref.backend.snapshot('wanted:');
    assert.equal(snapshot.incomplete, undefined, 'the listing limit counts matching keys only');
    assert.deepEqual(snapshot.locks.map(({ key }) => key).sort(), ['wanted:1', long('wanted:')]);
    assert.deepEqual(
      snapshot.references.map(({ resource }) => resource),
      ['wanted:r'],
    );
    for (const lease of leases) await lease.release();
    for (const ref of [wanted, other]) await ref.dereference(() => undefined);
  });

  it('keeps fences increasing across FLUSHALL, after a quarantine of maxTtl', async () => {
    const namespace = await freshNamespace();
    const a = await make(namespace, { maxTtl: 1_000 });
    const old = await a.lock('f', { ttl: 800 }).acquire();
    await admin.flushall();
    const flushedAt = performance.now();
    const next = await a.lock('f', { ttl: 1_000 }).acquire({ timeout: 5_000 });
    assert.ok(performance.now() - flushedAt >= 900, 'no grant before maxTtl had passed');
    assert.ok(next.fence > old.fence);
    await assert.rejects(old.extend(), LockLostError);
    await next.release();
  });

  it('keeps fences increasing across a real restart without persistence, and quarantines after it', async () => {
    const restarted = await RedisServer.start();
    try {
      const setup = new Redis(restarted.port, '127.0.0.1');
      await markNamespaceFresh(setup, 'restart');
      setup.disconnect();
      const before = await make('restart', { url: restarted.url, maxTtl: 2_000 });
      const old = await before.lock('r', { ttl: 2_000 }).acquire();
      await restarted.restart();
      const restartedAt = performance.now();
      // A process that never saw this namespace: the server's uptime says it may have restarted.
      const newcomer = await make('restart', { url: restarted.url, maxTtl: 2_000 });
      assert.equal(
        await newcomer.lock('r', { ttl: 2_000 }).tryAcquire(),
        null,
        'granted right after a restart',
      );
      // A wait it outlasts names the quarantine, not a holder.
      await assert.rejects(
        newcomer.lock('r').acquire({ timeout: 100 }),
        (error: unknown) =>
          error instanceof LockTimeoutError &&
          error.quarantined &&
          /quarantine/.test(error.message) &&
          /freshly started server/.test(error.message),
      );
      // The holder from before learns it lost the lease at its next extend.
      await assert.rejects(old.extend(), LockLostError);
      const next = await newcomer.lock('r', { ttl: 2_000 }).acquire({ timeout: 10_000 });
      assert.ok(
        performance.now() - restartedAt >= 1_000,
        'waited out (most of) maxTtl after the restart',
      );
      assert.ok(next.fence > old.fence, `fence ${String(next.fence)} after ${String(old.fence)}`);
      await next.release();
      const again = await before.lock('r', { ttl: 2_000 }).acquire({ timeout: 10_000 });
      assert.ok(again.fence > next.fence, 'the reconnected process gets a higher fence too');
      await again.release();
      await Promise.all([before.close(), newcomer.close()]);
    } finally {
      await restarted.dispose();
    }
  });

  it('fails with BackendError naming the address, without the password, when connecting to a dead server', async () => {
    const port = await freePort();
    const { ms, error } = await timed(connect(`redis://alice:s3cr3t-pw@127.0.0.1:${String(port)}`));
    assert.ok(error instanceof BackendError, `got ${String(error)}`);
    assert.equal(error.address, `redis://127.0.0.1:${String(port)}`);
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${String(port)}`));
    assert.doesNotMatch(`${error.message} ${error.address} ${error.stack ?? ''}`, /s3cr3t-pw/);
    assert.match(error.message, /ECONNREFUSED/, 'says why');
    assert.ok(ms < 8_000, `took ${ms.toFixed(0)} ms`);
  });

  it('rejects operations with BackendError within seconds when the server stops or freezes', async () => {
    const outage = await RedisServer.start();
    try {
      const setup = new Redis(outage.port, '127.0.0.1');
      await markNamespaceFresh(setup, 'outage');
      setup.disconnect();
      const disref = await make('outage', { url: outage.url });
      const lease = await disref.lock('held', { ttl: 30_000 }).acquire();
      outage.pause(); // SIGSTOP: the socket stays open, nothing answers
      const frozen = await timed(disref.lock('other').tryAcquire());
      assert.ok(frozen.error instanceof BackendError, `got ${String(frozen.error)}`);
      assert.equal(frozen.error.key, 'other');
      assert.match(
        frozen.error.message,
        new RegExp(`store redis://127\\.0\\.0\\.1:${String(outage.port)}`),
      );
      assert.ok(frozen.ms < 8_000, `frozen server: ${frozen.ms.toFixed(0)} ms`);
      await outage.stop(); // gone: connections refused
      const stopped = await timed(disref.lock('other').acquire({ timeout: 60_000 }));
      assert.ok(stopped.error instanceof BackendError, `got ${String(stopped.error)}`);
      assert.ok(stopped.ms < 8_000, `stopped server: ${stopped.ms.toFixed(0)} ms`);
      const extend = await timed(lease.extend());
      assert.ok(extend.error instanceof BackendError);
      assert.ok(extend.ms < 8_000);
      const closing = await timed(disref.close());
      assert.ok(closing.ms < 8_000, `close() with the server down: ${closing.ms.toFixed(0)} ms`);
    } finally {
      await outage.dispose();
    }
  });

  it("aborts a held lease's signal when its extension fails because the server stopped", async () => {
    const outage = await RedisServer.start();
    try {
      const setup = new Redis(outage.port, '127.0.0.1');
      await markNamespaceFresh(setup, 'extend-fails');
      setup.disconnect();
      const disref = await make('extend-fails', { url: outage.url });
      let reason: unknown;
      let abortedAfter = Infinity;
      const result = await timed(
        disref.lock('work', { ttl: 600 }).using(async (lease) => {
          const stoppedAt = performance.now();
          await outage.stop();
          await new Promise<void>((resolve) => {
            lease.signal.addEventListener('abort', () => {
              resolve();
            });
            setTimeout(resolve, 5_000).unref();
          });
          reason = lease.signal.reason;
          abortedAfter = performance.now() - stoppedAt;
        }),
      );
      assert.ok(reason instanceof LockLostError, `signal reason ${String(reason)}`);
      assert.equal(reason.key, 'work');
      // The 600 ms lease runs out locally at the latest (the wait above gives up after 5 s).
      assert.ok(abortedAfter <= 2_000, `aborted ${abortedAfter.toFixed(0)} ms after the outage`);
      assert.ok(
        result.error instanceof LockLostError,
        `using() settled with ${String(result.error)}`,
      );
      await disref.close();
    } finally {
      await outage.dispose();
    }
  });

  it('never closes an ioredis client passed in, and closes its own wake-up connection', async () => {
    const namespace = await freshNamespace();
    const client = new Redis(server.port, '127.0.0.1');
    await client.ping();
    const baseline = await clientCount(admin);
    const disref = await connect({ redis: client, namespace });
    assert.equal(disref.backend.address, `redis://127.0.0.1:${String(server.port)}`);
    const lease = await disref.lock('k').acquire();
    const waiting = disref.lock('k').acquire({ timeout: 5_000 }); // opens the subscriber
    await sleep(50);
    assert.equal(await clientCount(admin), baseline + 1, 'one duplicate for wake-ups');
    await lease.release();
    await (await waiting).release();
    await disref.close();
    assert.equal(client.status, 'ready');
    assert.equal(await client.ping(), 'PONG');
    await sleep(50);
    assert.equal(await clientCount(admin), baseline, 'the duplicate was closed');
    client.disconnect();
  });

  it('never closes a node-redis client passed in, and closes its own wake-up connection', async () => {
    const namespace = await freshNamespace();
    const client = createClient({ url: server.url });
    client.on('error', () => undefined);
    await client.connect();
    const baseline = await clientCount(admin);
    const disref = await connect({ redis: client, namespace });
    assert.equal(disref.backend.address, server.url);
    const lease = await disref.lock('k').acquire();
    const waiting = disref.lock('k').acquire({ timeout: 5_000 });
    await sleep(50);
    assert.equal(await clientCount(admin), baseline + 1, 'one duplicate for wake-ups');
    await lease.release();
    await (await waiting).release();
    await disref.close();
    assert.equal(client.isOpen, true);
    assert.equal(await client.ping(), 'PONG');
    await sleep(50);
    assert.equal(await clientCount(admin), baseline, 'the duplicate was closed');
    await client.close();
  });

  it('shares one subscriber connection among many waiters and unsubscribes shortly after they are done', async () => {
    const namespace = await freshNamespace();
    const holder = await make(namespace);
    const waiter = await make(namespace);
    const baseline = await clientCount(admin);
    const keys = Array.from({ length: 20 }, (_, i) => `key-${String(i % 10)}`);
    const leases = await Promise.all(
      [...new Set(keys)].map(async (key) => {
        const lease = await holder.lock(key, { ttl: 30_000 }).tryAcquire(); // never waits: no subscriber
        assert.ok(lease !== null);
        return lease;
      }),
    );
    const waits = keys.map((key) => waiter.lock(key).acquire({ timeout: 10_000 }));
    const channels = async (): Promise<string[]> =>
      (await admin.pubsub('CHANNELS', `${namespace}:*`)) as string[];
    // Per key, one channel for releases and one for hand-offs to this process.
    const expected = [...new Set(keys)].flatMap((key) => {
      const { channel } = lockKeys(namespace, key);
      return [channel, `${channel}:${waiter.id}`];
    });
    // Subscribing takes a moment (longer on a busy machine): wait for all of them.
    const subscribedBy = performance.now() + 5_000;
    while ((await channels()).length < 20 && performance.now() < subscribedBy) await sleep(20);
    assert.equal(await clientCount(admin), baseline + 1, 'one subscriber for 20 waiters');
    assert.deepEqual(
      (await channels()).sort(),
      expected.sort(),
      'two channels per key, however many waiters',
    );
    const started = performance.now();
    await Promise.all(leases.map((lease) => lease.release()));
    for (const wait of waits) await (await wait).release();
    assert.ok(performance.now() - started < 3_000, 'woken by releases, not by 30 s leases');
    await sleep(50);
    assert.equal((await channels()).length, 20, 'kept a moment for the next wait');
    await sleep(LINGER + 100);
    assert.deepEqual(await channels(), [], 'all unsubscribed');
  });

  it('opens no wake-up connection for a subscription that close() overtook', async () => {
    const namespace = await freshNamespace();
    const disref = await make(namespace);
    const before = await clientCount(admin);
    // Asked for, then closed in the same tick: the subscription is still on its way.
    const subscribing = disref.backend
      .onRelease('k', () => undefined)
      .catch((error: unknown) => error);
    await disref.backend.close();
    const outcome = await subscribing;
    assert.ok(outcome instanceof BackendError, String(outcome));
    assert.match(outcome.message, /closed/);
    assert.doesNotMatch(outcome.message, /reachable/, 'says it was closed, not that Redis is down');
    await sleep(300); // a connection opened after close() would show by now
    assert.equal(await clientCount(admin), before - 1, 'only the closed connection is gone');
  });

  it('leaves no sockets or timers behind after close()', async () => {
    const namespace = await freshNamespace();
    const sockets = (): number =>
      process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap').length;
    const timers = (): number =>
      process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
    const before = { sockets: sockets(), timers: timers() };
    const a = await connect({ url: server.url, namespace, heartbeatInterval: 20 });
    const b = await connect({ url: server.url, namespace });
    let waiting: Promise<unknown> | undefined;
    try {
      // Extended every 200 ms, at least three times; a lease this long survives a busy machine.
      await a.lock('k', { ttl: 600 }).using(() => sleep(700));
      await a.lock('k').acquire(); // still held at close
      waiting = b
        .lock('k')
        .acquire()
        .catch((error: unknown) => error); // still waiting (subscribed) at close
      await sleep(50);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    assert.ok(waiting !== undefined);
    assert.match(String(await waiting), /closed/);
    await sleep(50);
    assert.equal(sockets(), before.sockets, 'sockets still open');
    assert.ok(timers() <= before.timers, 'timers still pending');
  });
});
