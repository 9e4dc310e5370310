/**
 * The Lua scripts of the Redis backend, run against a real redis-server:
 * one backend call is one script, and the keys are read back with a plain
 * client. Expiry edges are set up by writing entries whose expiry is exactly
 * the server's current time.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { AcquireRequest } from '../src/backend.js';
import { connectionForClient } from '../src/backends/redis/client.js';
import { lockKeys, markerKey, processesKey, processKey } from '../src/backends/redis/keys.js';
import { RedisBackend } from '../src/backends/redis/redis-backend.js';
import { luaScripts, runScript } from '../src/backends/redis/scripts.js';
import { BackendError } from '../src/errors.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis script tests: ${unavailable} ***\n`);
}

describe('redis scripts', { skip: !requireServers && unavailable }, () => {
  let server: RedisServer;
  let admin: Redis;
  const backends: RedisBackend[] = [];
  let counter = 0;

  /** A backend in a namespace of its own (marked as long in use: no start-up quarantine). */
  const backend = async (
    maxTtl = 60_000,
  ): Promise<{ backend: RedisBackend; namespace: string }> => {
    counter += 1;
    const namespace = `s${String(counter)}`;
    await markNamespaceFresh(admin, namespace);
    const made = new RedisBackend({ server: { client: admin }, namespace, maxTtl });
    backends.push(made);
    return { backend: made, namespace };
  };
  const request = (owner: string, overrides: Partial<AcquireRequest> = {}): AcquireRequest => ({
    key: 'k',
    owner,
    mode: 'exclusive',
    ttl: 10_000,
    fair: true,
    wait: false,
    waiterTtl: 5_000,
    ...overrides,
  });
  const serverMs = async (): Promise<number> => {
    const [seconds, micros] = await admin.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await RedisServer.start();
    admin = new Redis(server.port, '127.0.0.1');
  });
  after(async () => {
    await Promise.all(backends.map((made) => made.close()));
    admin.disconnect();
    await server.dispose();
  });

  it('keeps every key of a lock under one hash tag, hashing long keys and keys with braces', () => {
    const tag = (name: string): string => /\{[^}]*\}/.exec(name)?.[0] ?? '';
    for (const key of ['invoice:42', 'x'.repeat(5000), 'a}b', 'ünïcödé {x}']) {
      const keys = lockKeys('ns', key);
      const tags = [keys.lock, keys.queue, keys.fence, keys.channel].map(tag);
      assert.ok(
        tags[0] !== undefined && tags[0].length > 2,
        `non-empty tag for ${key.slice(0, 20)}`,
      );
      assert.ok(
        tags.every((t) => t === tags[0]),
        `one tag for ${key.slice(0, 20)}: ${tags.join(' ')}`,
      );
    }
    assert.equal(lockKeys('ns', 'invoice:42').lock, 'ns:{k:invoice:42}:lock');
    assert.match(lockKeys('ns', 'x'.repeat(5000)).lock, /^ns:\{h:[0-9a-f]{64}\}:lock$/);
    assert.notEqual(lockKeys('a', 'k:x').lock, lockKeys('a:k', 'x').lock);
    assert.notEqual(
      lockKeys('ns', 'x'.repeat(300)).lock,
      lockKeys('ns', `${'x'.repeat(299)}y`).lock,
    );
    assert.equal(markerKey('ns'), '{ns}:marker');
  });

  it('acquire grants with a clock-derived fence, renews a repeated request, and denies with retryAfter', async () => {
    const { backend: b, namespace } = await backend();
    const before = await serverMs();
    const first = await b.acquire(request('a', { ttl: 2_000 }));
    assert.ok(first.granted);
    assert.ok(first.fence >= before * 1000, 'fence >= server ms * 1000');
    const again = await b.acquire(request('a', { ttl: 5_000 }));
    assert.deepEqual(again, first, 'the same owner gets its fence back');
    const keys = lockKeys(namespace, 'k');
    const entry = await admin.hget(keys.lock, 'h:a');
    const expiresAt = Number(entry?.split(' ')[2]);
    assert.ok(
      Math.abs(expiresAt - (await serverMs()) - 5_000) < 200,
      'lease renewed to the new ttl',
    );
    const denied = await b.acquire(request('b'));
    assert.equal(denied.granted, false);
    assert.ok(!denied.granted && denied.retryAfter > 4_000 && denied.retryAfter <= 5_000);
    const pttl = await admin.pttl(keys.lock);
    assert.ok(
      pttl > 4_000 && pttl <= 5_000,
      `lock key lives as long as its lease (${String(pttl)})`,
    );
  });

  it("acquire replies with the namespace's epoch only to a caller that does not know it", async () => {
    const { namespace } = await backend();
    const { connection } = connectionForClient(admin, 'client');
    const keys = lockKeys(namespace, 'epoch');
    const acquire = (owner: string, known: string): Promise<unknown> =>
      runScript(
        connection,
        luaScripts().acquire,
        [keys.lock, keys.queue, keys.fence, markerKey(namespace)],
        [
          owner,
          'exclusive',
          '10000',
          '1',
          '0',
          '5000',
          known,
          '60000',
          '600000',
          keys.channel,
          '',
          '',
        ],
      );
    const epoch = await admin.hget(markerKey(namespace), 'epoch');
    assert.ok(epoch !== null && epoch !== '');
    const [granted, fence, told] = (await acquire('s:a', '')) as [number, number, string];
    assert.deepEqual([granted, told], [1, epoch], 'a newcomer is told the epoch');
    assert.ok(fence > 0);
    const denied = (await acquire('s:b', epoch)) as unknown[];
    assert.equal(denied.length, 2, 'a caller that knows it is not told again');
    assert.equal(denied[0], 0);
    const stale = (await acquire('s:c', 'an-older-epoch')) as unknown[];
    assert.equal(stale[2], epoch, 'a caller that knew another one is told the current one');
  });

  it('treats an entry expiring at the current server time as expired (acquire, extend, release)', async () => {
    const { backend: b, namespace } = await backend();
    const keys = lockKeys(namespace, 'k');
    const grant = await b.acquire(request('old'));
    assert.ok(grant.granted);
    await admin.hset(
      keys.lock,
      'h:old',
      `exclusive ${String(grant.fence)} ${String(await serverMs())}`,
    );
    assert.equal(await b.extend('k', 'old', 10_000), false, 'extend of an expired lease');
    await admin.hset(
      keys.lock,
      'h:old',
      `exclusive ${String(grant.fence)} ${String(await serverMs())}`,
    );
    assert.equal(await b.release('k', 'old'), false, 'release of an expired lease');
    await admin.hset(
      keys.lock,
      'h:old',
      `exclusive ${String(grant.fence)} ${String(await serverMs())}`,
    );
    const next = await b.acquire(request('new'));
    assert.ok(next.granted, 'a lease ending now no longer blocks');
    assert.ok(next.fence > grant.fence);
    assert.equal(await admin.hexists(keys.lock, 'h:old'), 0, 'the expired entry was removed');
    // One ms in the future is still live.
    await admin.hset(
      keys.lock,
      'h:new',
      `exclusive ${String(next.fence)} ${String((await serverMs()) + 1_000)}`,
    );
    assert.equal((await b.acquire(request('third'))).granted, false);
    assert.equal(await b.extend('k', 'new', 10_000), true);
  });

  it('extend and release act only for the owner; the fence key outlives the release', async () => {
    const { backend: b, namespace } = await backend();
    const keys = lockKeys(namespace, 'k');
    const grant = await b.acquire(request('a', { ttl: 300 }));
    assert.ok(grant.granted);
    assert.equal(await b.extend('k', 'intruder', 10_000), false);
    assert.equal(await b.release('k', 'intruder'), false);
    assert.equal(await b.extend('k', 'a', 5_000), true);
    assert.ok(
      (await admin.pttl(keys.lock)) > 4_000,
      'extend keeps the key alive as long as the lease',
    );
    assert.equal(await b.release('k', 'a'), true);
    assert.equal(await b.release('k', 'a'), false, 'a second release is a no-op');
    assert.equal(await admin.exists(keys.lock), 0, 'no lock state left');
    assert.equal(await admin.get(keys.fence), String(grant.fence));
    assert.ok((await admin.pttl(keys.fence)) > 60_000, 'the fence key is kept well past maxTtl');
    const next = await b.acquire(request('b'));
    assert.ok(next.granted && next.fence > grant.fence);
  });

  it('fences stay strictly increasing when many are handed out within one ms, and after the fence key is lost', async () => {
    const { backend: b, namespace } = await backend();
    const fences: number[] = [];
    for (let i = 0; i < 20; i++) {
      const grant = await b.acquire(request(`o${String(i)}`, { ttl: 1_000 }));
      assert.ok(grant.granted);
      fences.push(grant.fence);
      await b.release('k', `o${String(i)}`);
    }
    await admin.del(lockKeys(namespace, 'k').fence);
    // Without the key, the clock carries the order: it must have moved past the last grant's ms
    // (after a real data loss, the quarantine makes sure it has, by maxTtl).
    await sleep(2);
    const after = await b.acquire(request('last'));
    assert.ok(after.granted);
    fences.push(after.fence);
    for (let i = 1; i < fences.length; i++) {
      assert.ok((fences[i] ?? 0) > (fences[i - 1] ?? Infinity), `fence ${String(i)} increases`);
    }
  });

  it('every grant continues a fence key that is ahead of the clock; a foreign string there is refused and put back', async () => {
    const { backend: b, namespace } = await backend();
    const { fence } = lockKeys(namespace, 'k');
    const last = (await serverMs()) * 1000 + 5_000_000_000;
    await admin.set(fence, String(last));
    const fenceNow = async (): Promise<number> => Number(await admin.get(fence));
    // Each way a grant is made: a free lock (fast path), the release's hand-off
    // to an exclusive waiter, a reader joining a reader (full path), and the
    // hand-off a release makes after reading the whole state.
    const first = await b.acquire(request('a'));
    assert.ok(first.granted && first.fence === last + 1);
    assert.equal((await b.acquire(request('b', { wait: true }))).granted, false);
    await b.release('k', 'a');
    assert.equal(await fenceNow(), last + 2, 'handed to b');
    await b.release('k', 'b');
    const reader = await b.acquire(request('c', { mode: 'shared' }));
    assert.ok(reader.granted && reader.fence === last + 3);
    const joined = await b.acquire(request('d', { mode: 'shared' }));
    assert.ok(joined.granted && joined.fence === last + 4);
    assert.equal((await b.acquire(request('e', { wait: true }))).granted, false);
    await b.release('k', 'c');
    assert.equal(await fenceNow(), last + 4, 'd still reads');
    await b.release('k', 'd');
    assert.equal(await fenceNow(), last + 5, 'handed to e');
    await b.release('k', 'e');

    await admin.set(fence, 'not-a-fence', 'PX', 60_000);
    await assert.rejects(b.acquire(request('d')), (error: unknown) => {
      assert.ok(error instanceof BackendError, String(error));
      assert.match(error.message, /holds "not-a-fence", not a fence/);
      return true;
    });
    assert.equal(await admin.get(fence), 'not-a-fence', 'left as it was found');
    assert.equal(await admin.exists(lockKeys(namespace, 'k').lock), 0, 'and nothing granted');
  });

  it('queues fair waiters in order, hands a release to the head, and skips a waiter that stopped renewing', async () => {
    const { backend: b, namespace } = await backend();
    const keys = lockKeys(namespace, 'k');
    assert.ok((await b.acquire(request('holder', { ttl: 5_000 }))).granted);
    assert.equal((await b.acquire(request('w1', { wait: true, waiterTtl: 1_000 }))).granted, false);
    assert.equal((await b.acquire(request('w2', { wait: true, waiterTtl: 5_000 }))).granted, false);
    assert.deepEqual(await admin.zrange(keys.queue, '0', '-1'), ['w1', 'w2']);
    // A renewal keeps the waiter's place.
    assert.equal((await b.acquire(request('w1', { wait: true, waiterTtl: 1_000 }))).granted, false);
    assert.deepEqual(await admin.zrange(keys.queue, '0', '-1'), ['w1', 'w2']);
    // The release hands the lock to the head of the queue, in the same script.
    assert.equal(await b.release('k', 'holder'), true);
    const state = await b.inspect('k');
    assert.deepEqual(
      state?.holders.map((holder) => holder.owner),
      ['w1'],
      'handed to the first waiter',
    );
    assert.equal(
      (await b.acquire(request('w2', { wait: true }))).granted,
      false,
      'w2 may not pass w1',
    );
    assert.equal(
      (await b.acquire(request('barger', { fair: false }))).granted,
      false,
      'nobody barges into a handed-off lock',
    );
    const again = await b.acquire(request('w1', { wait: true }));
    assert.ok(again.granted, 'w1 holds it: its own attempt returns its fence');
    assert.equal(await b.release('k', 'w1'), true);
    assert.deepEqual(
      (await b.inspect('k'))?.holders.map((holder) => holder.owner),
      ['w2'],
      'then to the next',
    );
    assert.equal(await b.release('k', 'w2'), true);
    assert.equal(await admin.exists(keys.queue), 0, 'queue empty');

    // A waiter whose registration ran out is skipped by the hand-off.
    assert.ok((await b.acquire(request('holder2', { ttl: 5_000 }))).granted);
    assert.equal((await b.acquire(request('gone', { wait: true, waiterTtl: 200 }))).granted, false);
    assert.equal((await b.acquire(request('w3', { wait: true, waiterTtl: 5_000 }))).granted, false);
    await sleep(250); // 'gone' stops renewing: its registration expires
    assert.equal(await b.release('k', 'holder2'), true);
    assert.deepEqual(
      (await b.inspect('k'))?.holders.map((holder) => holder.owner),
      ['w3'],
    );
    await b.release('k', 'w3');
  });

  it('lets queued readers share, and lets the head writer through first', async () => {
    const { backend: b } = await backend();
    const shared = { mode: 'shared' as const, wait: true };
    assert.ok((await b.acquire(request('r0', shared))).granted);
    assert.ok((await b.acquire(request('r1', shared))).granted, 'readers share');
    assert.equal((await b.acquire(request('w', { wait: true }))).granted, false);
    assert.equal(
      (await b.acquire(request('r2', shared))).granted,
      false,
      'reader queues behind the writer',
    );
    await b.release('k', 'r0');
    await b.release('k', 'r1');
    assert.equal(
      (await b.acquire(request('r2', shared))).granted,
      false,
      'still behind the writer',
    );
    assert.ok((await b.acquire(request('w', { wait: true }))).granted);
    await b.release('k', 'w');
    assert.ok((await b.acquire(request('r2', shared))).granted);
  });

  it('an unfair writer that waits blocks new unfair readers until it leaves or expires', async () => {
    const { backend: b, namespace } = await backend();
    const keys = lockKeys(namespace, 'k');
    const unfair = { fair: false };
    assert.ok((await b.acquire(request('r0', { ...unfair, mode: 'shared' }))).granted);
    assert.equal(
      (await b.acquire(request('w', { ...unfair, wait: true, waiterTtl: 200 }))).granted,
      false,
    );
    assert.ok((await admin.hget(keys.lock, 'p:w')) !== null, 'pending writer recorded');
    assert.equal((await b.acquire(request('r1', { ...unfair, mode: 'shared' }))).granted, false);
    const state = await b.inspect('k');
    assert.equal(state?.waiters, 1);
    await b.leave('k', 'w');
    assert.ok(
      (await b.acquire(request('r1', { ...unfair, mode: 'shared' }))).granted,
      'after leave',
    );
    assert.equal(
      (await b.acquire(request('w', { ...unfair, wait: true, waiterTtl: 600 }))).granted,
      false,
    );
    assert.equal((await b.acquire(request('r2', { ...unfair, mode: 'shared' }))).granted, false);
    await sleep(650);
    assert.ok(
      (await b.acquire(request('r2', { ...unfair, mode: 'shared' }))).granted,
      'after expiry',
    );
  });

  it('inspect reports holders with ttlLeft and the waiter count, or null', async () => {
    const { backend: b } = await backend();
    assert.equal(await b.inspect('k'), null);
    const grant = await b.acquire(request('a', { ttl: 4_000 }));
    assert.ok(grant.granted);
    await b.acquire(request('w', { wait: true }));
    const state = await b.inspect('k');
    assert.ok(state !== null);
    assert.equal(state.key, 'k');
    assert.equal(state.waiters, 1);
    assert.equal(state.holders.length, 1);
    const [holder] = state.holders;
    assert.equal(holder?.owner, 'a');
    assert.equal(holder?.mode, 'exclusive');
    assert.equal(holder?.fence, grant.fence);
    assert.ok(holder !== undefined && holder.ttlLeft > 3_500 && holder.ttlLeft <= 4_000);
    await b.leave('k', 'w');
    await b.release('k', 'a');
    assert.equal(await b.inspect('k'), null);
  });

  it('release and leave publish a wake-up; a stale release does not', async () => {
    const { backend: b } = await backend();
    let wakeups = 0;
    const stop = await b.onRelease('k', () => {
      wakeups += 1;
    });
    assert.ok((await b.acquire(request('a'))).granted);
    await b.acquire(request('w', { wait: true }));
    await b.leave('k', 'w');
    await b.release('k', 'a');
    await b.release('k', 'a');
    await b.leave('k', 'nobody');
    await sleep(50);
    assert.equal(wakeups, 2);
    stop();
  });

  it('heartbeat registers the process until server time + ttl; removeProcess forgets it', async () => {
    const { backend: b, namespace } = await backend();
    await b.heartbeat('p1', 3_000);
    const expiresAt = Number(await admin.zscore(processesKey(namespace), 'p1'));
    const now = await serverMs();
    assert.ok(expiresAt - now > 2_500 && expiresAt - now <= 3_000, `${String(expiresAt - now)}`);
    const record = await admin.hgetall(processKey(namespace, 'p1'));
    assert.ok(Math.abs(Number(record.beat) - now) < 500, 'beat time recorded');
    assert.equal(record.pid, String(process.pid));
    await b.removeProcess('p1');
    assert.equal(await admin.zscore(processesKey(namespace), 'p1'), null);
    assert.equal(await admin.exists(processKey(namespace, 'p1')), 0);
  });

  it('runs a script by EVAL after SCRIPT FLUSH (NOSCRIPT fallback), then by EVALSHA again', async () => {
    const { backend: b } = await backend();
    const { connection } = connectionForClient(admin, 'client');
    const script = luaScripts().timesModified;
    await admin.script('FLUSH');
    assert.deepEqual(await admin.script('EXISTS', script.sha), [0]);
    assert.equal(await runScript(connection, script, ['nothing-here'], []), 0);
    assert.deepEqual(await admin.script('EXISTS', script.sha), [1], 'EVAL cached it');
    await admin.script('FLUSH');
    const grant = await b.acquire(request('a'));
    assert.ok(grant.granted, 'the backend recovers from NOSCRIPT transparently');
    await assert.rejects(runScript(connection, script, [], []), /takes 1 keys/);
  });

  it('quarantines for maxTtl when a process that knew the epoch finds the marker gone', async () => {
    const { backend: b, namespace } = await backend(800);
    assert.ok((await b.acquire(request('a', { ttl: 500 }))).granted); // learns the epoch
    await admin.del(markerKey(namespace), lockKeys(namespace, 'k').lock); // as FLUSHALL would
    const denied = await b.acquire(request('b', { ttl: 500 }));
    assert.equal(denied.granted, false);
    assert.ok(
      !denied.granted && denied.retryAfter > 600 && denied.retryAfter <= 800,
      'now + maxTtl',
    );
    const marker = await admin.hgetall(markerKey(namespace));
    assert.ok(marker.epoch !== undefined && marker.epoch !== 'fresh-test-server', 'a new epoch');
    assert.equal(Number(marker.until) - Number(marker.since), 800);
    await sleep(850);
    assert.ok(
      (await b.acquire(request('b', { ttl: 500 }))).granted,
      'granted after the quarantine',
    );
  });

  it('a process that knew the old epoch raises the quarantine when a newcomer recreated the marker', async () => {
    // The server must be up for longer than maxTtl, or the newcomer quarantines by uptime.
    while (Number(/uptime_in_seconds:(\d+)/.exec(await admin.info('server'))?.[1]) < 1) {
      await sleep(100);
    }
    const { backend: old, namespace } = await backend(800);
    await old.heartbeat('old-process', 10_000); // learns the epoch
    await admin.del(markerKey(namespace)); // lost while the server stayed up
    const newcomer = new RedisBackend({ server: { client: admin }, namespace, maxTtl: 800 });
    backends.push(newcomer);
    // The documented residual case: a process that never saw an epoch cannot tell.
    assert.ok((await newcomer.acquire(request('n', { key: 'other' }))).granted);
    const denied = await old.acquire(request('o'));
    assert.equal(denied.granted, false, 'the old process notices the new epoch');
    const marker = await admin.hgetall(markerKey(namespace));
    assert.equal(Number(marker.until), Number(marker.since) + 800, 'until since + maxTtl');
    assert.ok(!denied.granted && denied.retryAfter <= 800);
    const stillDenied = await newcomer.acquire(request('n2'));
    assert.equal(stillDenied.granted, false, 'everyone waits out the quarantine');
  });

  it('the heartbeat recreates a vanished marker with a quarantine, so loss is noticed without an acquire', async () => {
    const { backend: b, namespace } = await backend(700);
    await b.heartbeat('p', 10_000);
    await admin.del(markerKey(namespace));
    await b.heartbeat('p', 10_000);
    const marker = await admin.hgetall(markerKey(namespace));
    assert.ok(Number(marker.until) - Number(marker.since) === 700);
    const denied = await b.acquire(request('a'));
    assert.ok(!denied.granted && denied.retryAfter > 400);
  });

  /** EVALSHA and EVAL calls the server ran since the last CONFIG RESETSTAT. */
  const scriptCalls = async (): Promise<number> => {
    const stats = await admin.info('commandstats');
    let calls = 0;
    for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm))
      calls += Number(match[1]);
    return calls;
  };

  it('sends the lock operations of one turn as one batch-n.lua call, each with its own reply, in order', async () => {
    const { backend: b, namespace } = await backend();
    await Promise.all([
      b.acquire(request('warm', { key: 'w1' })),
      b.acquire(request('warm', { key: 'w2' })),
    ]);
    await admin.config('RESETSTAT');
    const [first, second, denied, again, foreignRelease, extended, released, left] =
      await Promise.all([
        b.acquire(request('a', { key: 'x' })),
        b.acquire(request('b', { key: 'y' })),
        b.acquire(request('c', { key: 'x', wait: true })), // after 'a' took x: denied, queued
        b.acquire(request('a', { key: 'x' })), // the same acquisition again: its own fence
        b.release('y', 'not-b'),
        b.extend('x', 'a', 20_000),
        b.release('y', 'b'),
        b.leave('x', 'c'),
      ]);
    assert.equal(await scriptCalls(), 1, 'one script call for eight operations');
    assert.ok(first.granted && second.granted);
    assert.equal(denied.granted, false, 'x was taken earlier in the same batch');
    assert.deepEqual(again, first);
    assert.equal(foreignRelease, false);
    assert.equal(extended, true);
    assert.equal(released, true);
    assert.equal(left, undefined);
    const keys = lockKeys(namespace, 'x');
    assert.deepEqual(Object.keys(await admin.hgetall(keys.lock)), ['h:a'], 'c left the queue');
    assert.equal(await admin.exists(lockKeys(namespace, 'y').lock), 0, 'y was released');
    assert.ok((await admin.pttl(keys.lock)) > 15_000, 'the extension took');
  });

  it('splits a large turn into batches, and a failing operation fails alone with a BackendError naming its key', async () => {
    const { backend: b, namespace } = await backend();
    await admin.set(lockKeys(namespace, 'bad').lock, 'not a lock hash');
    await b.acquire(request('warm', { key: 'warm' }));
    await admin.config('RESETSTAT');
    const keys = Array.from({ length: 100 }, (_, i) => (i === 50 ? 'bad' : `k${String(i)}`));
    const results = await Promise.allSettled(keys.map((key) => b.acquire(request('o', { key }))));
    const calls = await scriptCalls();
    assert.ok(calls > 1 && calls < 100, `batched, in more than one call: ${String(calls)}`);
    const failed = results.flatMap((result, i) =>
      result.status === 'rejected' ? [{ i, error: result.reason as unknown }] : [],
    );
    assert.equal(failed.length, 1, 'only the bad key failed');
    const [failure] = failed;
    assert.equal(failure?.i, 50);
    assert.ok(failure?.error instanceof BackendError, String(failure?.error));
    assert.equal(failure.error.key, 'bad');
    assert.match(failure.error.message, /WRONGTYPE[\s\S]*holds a value disref cannot read/);
    const fences = results.flatMap((result) =>
      result.status === 'fulfilled' && result.value.granted ? [result.value.fence] : [],
    );
    assert.equal(fences.length, 99, 'every other key was granted');
    assert.equal(
      await admin.get(lockKeys(namespace, 'bad').lock),
      'not a lock hash',
      'the bad key untouched',
    );
  });
});
