/**
 * The memcached backend through `connect()`, against real memcached
 * processes: outages of the server that owns a key (stopped, frozen), fences
 * and the data-loss quarantine across a real restart and a flush_all, the
 * environment variables of the seed, lease time bounds, and in-process
 * wake-ups.
 */
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { after, afterEach, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackendError,
  connect,
  InvalidArgumentError,
  LockLostError,
  type ConnectOptions,
  type Disref,
} from '../src/index.js';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { CLOCK_TOLERANCE, MemcachedBackend } from '../src/backends/memcached/memcached-backend.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const skip = unavailable !== undefined && process.env.DISREF_REQUIRE_SERVERS !== '1';
if (skip) console.warn(`\n*** SKIPPING the memcached backend tests: ${unavailable ?? ''} ***\n`);

/** Milliseconds `promise` took to settle, and its error if it failed. */
async function timed(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  try {
    await promise;
    return { ms: performance.now() - start, error: undefined };
  } catch (error) {
    return { ms: performance.now() - start, error };
  }
}

function backendOf(disref: Disref): MemcachedBackend {
  assert.ok(disref.backend instanceof MemcachedBackend);
  return disref.backend;
}

describe('memcached backend', { skip: skip ? (unavailable ?? true) : false }, () => {
  const open: Disref[] = [];
  let namespaceCounter = 0;
  /** Servers, an admin client on them, and a way to connect like a new process. */
  const cluster = async (
    count: number,
  ): Promise<{
    servers: MemcachedServer[];
    admin: MemcachedClient;
    namespace: string;
    join: (options?: Partial<ConnectOptions>) => Promise<Disref>;
    dispose: () => Promise<void>;
  }> => {
    const servers = await MemcachedServer.startMany(count);
    const admin = new MemcachedClient({
      servers: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
    });
    namespaceCounter += 1;
    const namespace = `mc${String(namespaceCounter)}`;
    await markNamespaceFresh(admin, namespace);
    const url = `memcached://${servers.map((server) => server.hostPort).join(',')}`;
    return {
      servers,
      admin,
      namespace,
      join: async (options = {}) => {
        const disref = await connect({ url, namespace, maxTtl: 1_500, ...options });
        open.push(disref);
        return disref;
      },
      dispose: async () => {
        admin.close();
        await Promise.all(servers.map((server) => server.stop()));
      },
    };
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((disref) => disref.close()));
  });

  it('fails operations on a stopped server with BackendError naming it; other keys work; a restart recovers', async () => {
    const { servers, join, dispose } = await cluster(3);
    try {
      const a = await join();
      const backend = backendOf(a);
      const victim = servers[1];
      assert.ok(victim !== undefined);
      const keyOn = (address: string): string => {
        for (let i = 0; ; i++)
          if (backend.serverAddressOf(`k${String(i)}`) === address) return `k${String(i)}`;
      };
      const lost = keyOn(victim.address);
      const others = servers
        .filter((server) => server !== victim)
        .map((server) => keyOn(server.address));
      const held = await a.lock(lost, { ttl: 1_000 }).acquire();
      const kept = await Promise.all(others.map((key) => a.lock(key, { ttl: 1_000 }).acquire()));
      // Joins before the outage: a new identity whose heartbeat item hashes to the
      // stopped server (one chance in three) could not start at all.
      const b = await join();

      await victim.stop();
      // One at a time: a call started early could fail before anyone awaits it.
      for (const attempt of [
        () => a.lock(lost).tryAcquire(),
        () => held.extend(),
        () => a.lock(lost).acquire({ timeout: 5_000 }),
        () => a.backend.inspect(lost),
      ]) {
        const { ms, error } = await timed(attempt());
        assert.ok(error instanceof BackendError, `expected a BackendError, got ${String(error)}`);
        assert.equal(error.address, victim.address);
        assert.equal(error.key, lost);
        assert.match(error.message, new RegExp(`lock ${lost}: store ${victim.address}`));
        assert.ok(ms < 1_500, `failed after ${ms.toFixed(0)} ms`);
      }
      for (const lease of kept) await lease.extend();
      for (const key of others) assert.equal(await b.lock(key).tryAcquire(), null);
      await Promise.all(kept.map((lease) => lease.release()));

      await victim.restart();
      // Reconnects after its backoff; then the restart is quarantined for maxTtl.
      const started = performance.now();
      const fresh = await b.lock(lost).acquire({ timeout: 10_000 });
      assert.ok(fresh.fence > held.fence, 'fences keep growing across a restart');
      assert.ok(performance.now() - started >= 1_000, 'granted before old leases could have ended');
      await assert.rejects(held.extend(), LockLostError);
      await fresh.release();
    } finally {
      await dispose();
    }
  });

  it('fails within the request timeout when the server that owns a key is frozen', async () => {
    const { servers, join, dispose } = await cluster(1);
    const [server] = servers;
    assert.ok(server !== undefined);
    try {
      const a = await join();
      const lease = await a.lock('frozen').acquire();
      server.pause();
      const { ms, error } = await timed(a.lock('frozen').tryAcquire());
      assert.ok(error instanceof BackendError && error.address === server.address);
      assert.match(error.message, /no reply within/);
      assert.ok(ms < 3_000, `failed after ${ms.toFixed(0)} ms (request timeout 2 s)`);
      server.resume();
      await lease.extend();
      await lease.release();
    } finally {
      server.resume();
      await dispose();
    }
  });

  it('quarantines a restarted server for a process that never saw it, and keeps fences increasing', async () => {
    const { servers, join, dispose } = await cluster(1);
    const [server] = servers;
    assert.ok(server !== undefined);
    try {
      const a = await join();
      const before = await a.lock('restart').acquire();
      await before.release();
      await server.restart();
      // A new process: it cannot know what the old server granted, only that it is young.
      const c = await join();
      assert.equal(
        await c.lock('restart').tryAcquire(),
        null,
        'granted on a server younger than maxTtl',
      );
      const after = await c.lock('restart').acquire({ timeout: 10_000 });
      assert.ok(
        after.fence > before.fence,
        `fence ${String(after.fence)} after ${String(before.fence)}`,
      );
      await after.release();
    } finally {
      await dispose();
    }
  });

  it('quarantines after a flush_all even for a process that never saw the old data', async () => {
    const { admin, join, dispose } = await cluster(1);
    try {
      const a = await join();
      const old = await a.lock('flushed', { ttl: 1_500 }).acquire();
      await admin.flushAll();
      const lostAt = performance.now();
      const c = await join();
      assert.equal(await c.lock('flushed').tryAcquire(), null, 'granted right after a flush');
      await assert.rejects(old.extend(), LockLostError, 'the old holder learns at its next extend');
      const next = await c.lock('flushed').acquire({ timeout: 10_000 });
      assert.ok(
        performance.now() - lostAt >= 1_400,
        'granted before the old lease could have ended',
      );
      assert.ok(next.fence > old.fence);
      await next.release();
    } finally {
      await dispose();
    }
  });

  it('never cuts a lease short, and frees an abandoned one within ttl + CLOCK_TOLERANCE', async () => {
    const { join, dispose } = await cluster(1);
    try {
      const [a, b] = [await join(), await join()];
      const started = performance.now();
      await a.lock('abandoned', { ttl: 300 }).acquire(); // neither extended nor released
      let taken: number | undefined;
      while (taken === undefined) {
        const lease = await b.lock('abandoned').tryAcquire();
        if (lease === null) {
          await sleep(25);
          continue;
        }
        taken = performance.now() - started;
        await lease.release();
      }
      assert.ok(taken >= 300, `taken over after ${taken.toFixed(0)} ms`);
      assert.ok(taken <= 300 + CLOCK_TOLERANCE + 300, `taken over after ${taken.toFixed(0)} ms`);
    } finally {
      await dispose();
    }
  });

  it('wakes a waiter in the same process at once on release, despite a slow poll', async () => {
    const { join, dispose } = await cluster(1);
    try {
      const [a, b] = [await join(), await join()];
      const lease = await a.lock('local').acquire();
      const waiting = b.lock('local', { retryInterval: 10_000 }).acquire({ timeout: 20_000 });
      await sleep(100);
      const releasedAt = performance.now();
      await lease.release();
      const next = await waiting;
      const latency = performance.now() - releasedAt;
      assert.ok(latency < 500, `woken ${latency.toFixed(0)} ms after the release`);
      await next.release();
    } finally {
      await dispose();
    }
  });

  it('counts a writer waiting behind readers, and refuses fair queues naming the backend', async () => {
    const { join, dispose } = await cluster(1);
    try {
      const [a, b] = [await join(), await join()];
      const reader = await a.rwlock('rw').read().acquire();
      const writing = b.rwlock('rw').write().acquire({ timeout: 5_000 });
      await sleep(100);
      const state = await a.backend.inspect('rw');
      assert.equal(state?.waiters, 1);
      assert.deepEqual(
        state.holders.map((holder) => holder.mode),
        ['shared'],
      );
      await reader.release();
      const writer = await writing;
      assert.deepEqual(
        (await a.backend.inspect('rw'))?.holders.map((holder) => holder.mode),
        ['exclusive'],
      );
      await writer.release();
      assert.throws(
        () => a.lock('fair', { fair: true }),
        (error: unknown) =>
          error instanceof InvalidArgumentError && /memcached/.test(error.message),
      );
      await assert.rejects(
        a.backend.acquire({
          key: 'fair',
          owner: 'o',
          mode: 'exclusive',
          ttl: 1_000,
          fair: true,
          wait: false,
          waiterTtl: 1_000,
        }),
        InvalidArgumentError,
      );
    } finally {
      await dispose();
    }
  });

  it('keeps heartbeats as expiring items and deletes them on close', async () => {
    const { admin, namespace, join, dispose } = await cluster(2);
    try {
      const a = await join({ heartbeatInterval: 1_000, processTtl: 4_000 });
      const item = `${namespace}:p:${a.id}`;
      const server = admin.servers.find(
        (candidate) => candidate.id === admin.serverFor(`p:${a.id}`).id,
      );
      assert.ok(server !== undefined);
      const [beat] = await admin.meta(server, [{ command: 'mg', key: item, flags: ['t'] }]);
      assert.equal(beat.status, 'HD');
      const left = Number(beat.flags.get('t'));
      assert.ok(left >= 3 && left <= 6, `heartbeat item expires in ${String(left)} s`);
      await a.close();
      const [gone] = await admin.meta(server, [{ command: 'mg', key: item, flags: ['t'] }]);
      assert.equal(gone.status, 'EN');
    } finally {
      await dispose();
    }
  });

  it('refuses an item that is not a lock record with a BackendError naming the key', async () => {
    const { admin, namespace, join, dispose } = await cluster(1);
    try {
      const a = await join();
      const [server] = admin.servers;
      assert.ok(server !== undefined);
      await admin.meta(server, [
        { command: 'ms', key: `${namespace}:l:foreign`, value: 'not json', flags: ['T60'] },
      ]);
      await assert.rejects(
        a.lock('foreign').tryAcquire(),
        (error: unknown) =>
          error instanceof BackendError &&
          error.key === 'foreign' &&
          /not a disref lock record/.test(error.message),
      );
    } finally {
      await dispose();
    }
  });

  it('status lists what it can when a server of the pool does not answer, naming it', async () => {
    const { servers, admin, join, dispose } = await cluster(3);
    try {
      const disref = await join();
      // Stopped: a server holding neither the registries nor this process's items, which the
      // listing itself needs; only its data-loss quarantine is then unknown.
      const needed = new Set([
        backendOf(disref).registryAddress,
        admin.serverFor(`p:${disref.id}`).address,
      ]);
      const down = servers.find((server) => !needed.has(server.address));
      assert.ok(down !== undefined);
      await down.stop();
      const snapshot = await disref.backend.snapshot();
      assert.ok(
        snapshot.processes.some(({ id }) => id === disref.id),
        'processes still listed',
      );
      assert.match(
        snapshot.incomplete ?? '',
        new RegExp(`quarantine of ${down.address} could not be read`),
      );
      await disref.close();
    } finally {
      await dispose();
    }
  });

  it('leaves no sockets or timers behind after close()', async () => {
    const { join, dispose } = await cluster(2);
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type === 'Timeout' || type === 'TCPWRAP') {
          live.set(
            id,
            (process.env.LEAK_STACKS ?? '') === '' ? type : (new Error(type).stack ?? type),
          );
        }
      },
      destroy(id) {
        live.delete(id);
      },
    });
    hook.enable();
    try {
      const [a, b] = [await join({ heartbeatInterval: 20 }), await join()];
      await a.lock('k', { ttl: 90 }).using(() => sleep(100)); // extended at least twice
      const held = await a.lock('k').acquire();
      const waiting = b
        .lock('k')
        .acquire()
        .catch((error: unknown) => error); // still polling at close
      await b
        .rwlock('rw')
        .read()
        .using(() => sleep(5));
      await sleep(50);
      void held;
      await Promise.all(open.splice(0).map((disref) => disref.close()));
      assert.match(String(await waiting), /closed/);
      // Longer than the 90 ms lease: an extension that completes after its release
      // re-arms the lease's expiry timer (src/locks/lease.ts, reported), which then fires.
      await sleep(150);
      await new Promise(setImmediate);
    } finally {
      hook.disable();
      await dispose();
    }
    assert.deepEqual([...live.values()], [], 'resources still alive after close()');
  });

  describe('servers from the environment, as the seed read them', () => {
    let server: MemcachedServer;
    const saved = { ...process.env };
    before(async () => {
      server = await MemcachedServer.start();
      delete process.env.DISREF_URL;
    });
    after(async () => {
      for (const name of ['DISREF_URL', 'DISREF_MEMCACHED_SERVERS', 'MEMCACHEDLOCK_SERVERS']) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
      await server.stop();
    });

    for (const variable of ['DISREF_MEMCACHED_SERVERS', 'MEMCACHEDLOCK_SERVERS']) {
      it(`connect() with no URL uses ${variable}`, async () => {
        delete process.env.DISREF_MEMCACHED_SERVERS;
        delete process.env.MEMCACHEDLOCK_SERVERS;
        process.env[variable] = server.hostPort;
        const admin = new MemcachedClient({ servers: [{ host: '127.0.0.1', port: server.port }] });
        await markNamespaceFresh(admin, variable);
        admin.close();
        const disref = await connect({ namespace: variable });
        open.push(disref);
        assert.equal(disref.backend.name, 'memcached');
        assert.equal(disref.backend.address, server.address);
        const lease = await disref.lock('env').acquire({ timeout: 2_000 });
        await lease.release();
      });
    }
  });
});
