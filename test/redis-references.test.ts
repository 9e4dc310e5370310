/**
 * Reference counting on Redis, against a real redis-server: the scripts one
 * by one (expiry edges set up by writing the server's current time), then
 * real OS processes — killed with SIGKILL, paused with SIGSTOP, racing to
 * dereference — and `disref status` run as the built binary.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { StatusReport } from '../src/cli/status-command.js';
import type { Disref } from '../src/index.js';
import { connect } from '../src/index.js';
import {
  heldKey,
  lockKeys,
  pendingKey,
  processesKey,
  processKey,
  referenceKey,
} from '../src/backends/redis/keys.js';
import { RedisBackend } from '../src/backends/redis/redis-backend.js';
import { readLog, ReferenceWorker as Worker } from './harness/reference-workers.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';
import { eventually } from './harness/eventually.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const here = dirname(fileURLToPath(import.meta.url));
const bin = join(here, '..', 'dist', 'cli', 'main.js');
/** Liveness of the processes in the cross-process tests: dead 1 s after the last beat. */
const LIVENESS = { heartbeatInterval: 100, processTtl: 1_000 };
/** For tests where nobody should die: slow heartbeats, far from any timing edge on a loaded machine. */
const RELAXED = { heartbeatInterval: 1_000, processTtl: 10_000 };
const INFO = { host: 'test-host', pid: 4242 } as const;

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis reference tests: ${unavailable} ***\n`);
}

describe('redis references', { skip: !requireServers && unavailable }, () => {
  let server: RedisServer;
  let admin: Redis;
  let directory: string;
  const backends: RedisBackend[] = [];
  const disrefs: Disref[] = [];
  const workers: Worker[] = [];
  let counter = 0;

  /** A backend over the admin client in a namespace of its own (or `namespace`), and the namespace. */
  const backend = async (namespace = `rs${String(++counter)}`): Promise<[RedisBackend, string]> => {
    await markNamespaceFresh(admin, namespace);
    const made = new RedisBackend({ server: { client: admin }, namespace, maxTtl: 60_000 });
    backends.push(made);
    return [made, namespace];
  };
  const serverMs = async (): Promise<number> => {
    const [seconds, micros] = await admin.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  };
  /** Makes `processId`'s heartbeat run out at the current server ms (the expiry edge). */
  const runOutNow = async (namespace: string, processId: string): Promise<void> => {
    await admin.zadd(processesKey(namespace), String(await serverMs()), processId);
  };
  const disref = async (namespace: string): Promise<Disref> => {
    const made = await connect({
      url: server.url,
      namespace,
      ...LIVENESS,
      onError: () => undefined,
    });
    disrefs.push(made);
    return made;
  };
  const worker = async (
    namespace: string,
    liveness: typeof LIVENESS = LIVENESS,
  ): Promise<Worker> => {
    const log = join(directory, `${namespace}.log`);
    writeFileSync(log, '', { flag: 'a' });
    const made = await Worker.start({ url: server.url, namespace, log, ...liveness });
    workers.push(made);
    return made;
  };

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await RedisServer.start();
    admin = new Redis(server.port, '127.0.0.1');
    directory = mkdtempSync(join(tmpdir(), 'disref-refs-'));
  });
  after(async () => {
    await Promise.all(workers.map((made) => made.kill()));
    await Promise.all(disrefs.map((made) => made.close()));
    await Promise.all(backends.map((made) => made.close()));
    admin.disconnect();
    await server.dispose();
  });

  describe('scripts', () => {
    it('beat registers a process until server time + ttl, renews it, and refuses one that ran out or is unknown', async () => {
      const [b, ns] = await backend();
      assert.equal(await b.beat('p', 5_000, true, INFO), true);
      const expiresAt = Number(await admin.zscore(processesKey(ns), 'p'));
      assert.ok(Math.abs(expiresAt - (await serverMs()) - 5_000) < 300, 'expires at now + ttl');
      assert.deepEqual(
        { ...(await admin.hgetall(processKey(ns, 'p'))), beat: 'x' },
        { beat: 'x', host: 'test-host', pid: '4242' },
      );
      assert.equal(await b.beat('p', 5_000, false, INFO), true, 'a live process renews');
      assert.equal(await b.beat('stranger', 5_000, false, INFO), false, 'unknown: refused');
      assert.equal(await admin.zscore(processesKey(ns), 'stranger'), null, 'and not registered');

      await runOutNow(ns, 'p');
      assert.equal(await b.beat('p', 5_000, false, INFO), false, 'ran out at this very ms');
      await b.heartbeat('p', 5_000);
      assert.ok(
        Number(await admin.zscore(processesKey(ns), 'p')) <= (await serverMs()),
        'heartbeat() does not revive it either',
      );
      assert.equal(await b.addReference('job:1', 'p'), false, 'a dead process cannot reference');
      assert.equal(await b.beat('p2', 5_000, true, INFO), true, 'a new identity is welcome');
      await admin.zadd(processesKey(ns), String((await serverMs()) + 1_000), 'p3');
      assert.equal(await b.beat('p3', 5_000, false, INFO), true, 'one second left is live');
    });

    it('addReference registers live holders; removeReference hands the claim to the last one out', async () => {
      const [b, ns] = await backend();
      await b.beat('a', 10_000, true, INFO);
      await b.beat('b', 10_000, true, INFO);
      assert.equal(await b.addReference('job:1', 'a'), true);
      assert.equal(await b.addReference('job:1', 'a'), true, 'idempotent');
      assert.equal(await b.addReference('job:1', 'b'), true);
      assert.equal(await b.addReference('job:1', 'ghost'), false);
      const ref = referenceKey(ns, 'job:1');
      assert.equal(ref, `${ns}:{r:job:1}:ref`);
      assert.deepEqual((await admin.hkeys(ref)).sort(), ['p:a', 'p:b', 'resource']);
      assert.deepEqual(await admin.smembers(heldKey(ns, 'a')), ['job:1']);
      assert.equal(await b.countReferences('job:1'), 2);

      assert.deepEqual(await b.removeReference('job:1', 'ghost', 1_000), {
        removed: false,
        claim: null,
      });
      assert.deepEqual(await b.removeReference('job:1', 'a', 1_000), {
        removed: true,
        claim: null,
      });
      assert.equal(await admin.exists(heldKey(ns, 'a')), 0, 'no longer held by a');
      const last = await b.removeReference('job:1', 'b', 1_000);
      assert.equal(last.removed, true);
      assert.equal(last.claim?.attempt, 1);
      assert.equal(last.claim.resource, 'job:1');
      const due = Number(await admin.zscore(pendingKey(ns, 'job'), 'job:1'));
      assert.ok(Math.abs(due - (await serverMs()) - 1_000) < 300, 'pending until the claim lapses');
      assert.deepEqual(await b.removeReference('job:1', 'b', 1_000), {
        removed: false,
        claim: null,
      });
      assert.equal(await b.finishCompletion(last.claim, 0), true);
      assert.equal(await admin.exists(ref), 0, 'keys deleted');
      assert.equal(await admin.zscore(pendingKey(ns, 'job'), 'job:1'), null);
    });

    it('prunes holders whose heartbeat ran out; a resource left without live holders is queued', async () => {
      const [b, ns] = await backend();
      await b.beat('a', 10_000, true, INFO);
      await b.beat('d', 10_000, true, INFO);
      await b.addReference('job:2', 'a');
      await b.addReference('job:2', 'd');
      await b.addReference('job:3', 'd');
      await runOutNow(ns, 'd');
      assert.equal(await b.countReferences('job:2'), 1);
      assert.equal(await admin.hexists(referenceKey(ns, 'job:2'), 'p:d'), 0, 'pruned');
      assert.equal(await b.countReferences('job:3'), 0);
      assert.equal(await admin.hget(referenceKey(ns, 'job:3'), 'completing'), '1');
      assert.equal(await admin.zscore(pendingKey(ns, 'job'), 'job:3'), '0', 'due now');
      const claim = await b.claimPendingCompletion(['job'], 5_000);
      assert.equal(claim?.resource, 'job:3');
      assert.equal(claim.attempt, 1);
      const last = await b.removeReference('job:2', 'a', 5_000);
      assert.equal(last.claim?.attempt, 1, 'the dead co-holder does not keep it open');
    });

    it('a claim whose expiry reaches the current server ms has lapsed: recovery takes it over with the next attempt', async () => {
      const [b, ns] = await backend();
      const ref = referenceKey(ns, 'job:4');
      const pending = pendingKey(ns, 'job');
      await b.beat('a', 10_000, true, INFO);
      await b.addReference('job:4', 'a');
      const first = (await b.removeReference('job:4', 'a', 10_000)).claim;
      assert.ok(first !== null);
      assert.equal(await b.claimPendingCompletion(['job'], 10_000), null, 'the claim is live');
      const lapse = async (): Promise<void> => {
        const now = String(await serverMs());
        await admin.hset(ref, 'claimUntil', now);
        await admin.zadd(pending, now, 'job:4');
      };
      await lapse();
      assert.equal(
        await b.extendClaim(first, 10_000),
        true,
        'lapsed but not taken over: extendable',
      );
      const extended = Number(await admin.hget(ref, 'claimUntil'));
      assert.ok(extended - (await serverMs()) > 9_000);
      assert.equal(Number(await admin.zscore(pending, 'job:4')), extended, 'due when it lapses');
      await lapse();
      const second = await b.claimPendingCompletion(['job'], 10_000);
      assert.ok(second !== null);
      assert.equal(second.attempt, 2);
      assert.notEqual(second.token, first.token);
      assert.equal(await b.extendClaim(first, 10_000), false, 'the old claim is gone');
      assert.equal(await b.finishCompletion(first, 0), false);
      await b.abandonCompletion(first);
      assert.equal(await admin.hget(ref, 'claim'), second.token, 'abandon by the old claim: no-op');
      assert.equal(await b.finishCompletion(second, 0), true);
      assert.equal(await admin.exists(ref), 0);
      assert.equal(await b.claimPendingCompletion(['job'], 10_000), null);
    });

    it('abandonCompletion makes the completion due at once, for processes handling its kind only', async () => {
      const [b, ns] = await backend();
      await b.beat('a', 10_000, true, INFO);
      await b.addReference('report:1', 'a');
      const first = (await b.removeReference('report:1', 'a', 10_000)).claim;
      assert.ok(first !== null);
      await b.abandonCompletion(first);
      assert.equal(await admin.hget(referenceKey(ns, 'report:1'), 'claim'), null);
      assert.equal(await admin.zscore(pendingKey(ns, 'report'), 'report:1'), '0');
      assert.equal(await b.claimPendingCompletion(['job'], 10_000), null, 'another kind');
      const retry = await b.claimPendingCompletion(['job', 'report'], 10_000);
      assert.equal(retry?.resource, 'report:1');
      assert.equal(retry.attempt, 2);
    });

    it('finishCompletion keeps holders that arrived while the completion ran, as a new lifetime', async () => {
      const [b, ns] = await backend();
      const ref = referenceKey(ns, 'job:5');
      await b.beat('a', 10_000, true, INFO);
      await b.beat('b', 10_000, true, INFO);
      await b.addReference('job:5', 'a');
      assert.equal(await b.incrementTimesModified('job:5', 3), 3);
      const claim = (await b.removeReference('job:5', 'a', 10_000)).claim;
      assert.ok(claim !== null);
      assert.equal(await b.addReference('job:5', 'b'), true, 'referenced while completing');
      assert.equal(await b.finishCompletion(claim, 3), true);
      assert.equal(await b.timesModified('job:5'), 0, 'a new lifetime starts at zero');
      assert.deepEqual((await admin.hkeys(ref)).sort(), ['p:b', 'resource']);
      assert.equal(await admin.zscore(pendingKey(ns, 'job'), 'job:5'), null);
      const next = (await b.removeReference('job:5', 'b', 10_000)).claim;
      assert.equal(next?.attempt, 1, 'attempts count per lifetime');
      assert.equal(await b.finishCompletion(next, 0), true);
      assert.equal(await admin.exists(ref), 0);
    });

    it('reapDeadProcesses forgets dead processes and queues what they held; only resources without live holders are claimed', async () => {
      const [b, ns] = await backend();
      for (const id of ['a', 'd1', 'd2']) await b.beat(id, 10_000, true, INFO);
      await b.addReference('job:6', 'd1');
      await b.addReference('job:7', 'd1');
      await b.addReference('job:7', 'a');
      await b.addReference('other:1', 'd2');
      await runOutNow(ns, 'd1');
      await admin.zadd(processesKey(ns), '0', 'd2');
      assert.equal(await b.reapDeadProcesses(), 2);
      assert.deepEqual(await admin.zrange(processesKey(ns), '0', '-1'), ['a']);
      for (const id of ['d1', 'd2']) {
        assert.equal(await admin.exists(heldKey(ns, id), processKey(ns, id)), 0, `${id} forgotten`);
      }
      assert.deepEqual(await admin.zrange(pendingKey(ns, 'job'), '0', '-1', 'WITHSCORES'), [
        'job:6',
        '0',
        'job:7',
        '0',
      ]);
      assert.deepEqual(await admin.zrange(pendingKey(ns, 'other'), '0', '-1'), ['other:1']);
      assert.equal(await b.reapDeadProcesses(), 0);
      assert.equal(
        await b.beat('d1', 10_000, false, INFO),
        false,
        'a forgotten process stays dead',
      );

      const claim = await b.claimPendingCompletion(['job'], 10_000);
      assert.equal(claim?.resource, 'job:6');
      assert.equal(await b.claimPendingCompletion(['job'], 10_000), null, 'job:7 is still held');
      assert.equal(
        await admin.zscore(pendingKey(ns, 'job'), 'job:7'),
        null,
        'dropped from pending',
      );
      assert.equal(await b.countReferences('job:7'), 1);
    });

    it('removeProcess forgets a process without references, and declares one holding some dead at once', async () => {
      const [b, ns] = await backend();
      await b.beat('p', 10_000, true, INFO);
      await b.beat('q', 10_000, true, INFO);
      await b.addReference('job:8', 'q');
      await b.removeProcess('p');
      assert.equal(await admin.zscore(processesKey(ns), 'p'), null);
      assert.equal(await admin.exists(processKey(ns, 'p')), 0);
      await b.removeProcess('q');
      assert.equal(await admin.zscore(processesKey(ns), 'q'), '0', 'dead, to be recovered');
      assert.equal(await b.beat('q', 10_000, false, INFO), false);
      assert.equal(await b.reapDeadProcesses(), 1);
      assert.equal((await b.claimPendingCompletion(['job'], 10_000))?.resource, 'job:8');
    });

    it('hashes long resource names and names with braces into the key, keeping the name', async () => {
      const [b, ns] = await backend();
      const long = `job:${'x'.repeat(300)}`;
      const braces = 'job:{a}b';
      for (const name of [long, braces]) {
        assert.match(referenceKey(ns, name), /^rs\d+:\{rh:[0-9a-f]{64}\}:ref$/);
      }
      await b.beat('a', 10_000, true, INFO);
      await b.addReference(long, 'a');
      await b.addReference(braces, 'a');
      await b.incrementTimesModified(braces, 2);
      const { references } = await b.snapshot();
      assert.deepEqual(
        references.map((ref) => [ref.resource, ref.holders, ref.timesModified]).sort(),
        [
          [braces, ['a'], 2],
          [long, ['a'], 0],
        ].sort(),
      );
      assert.equal((await b.removeReference(long, 'a', 1_000)).claim?.resource, long);
    });

    it('snapshot lists locks (hashed keys by name), references and processes, and nothing of other namespaces', async () => {
      // A namespace with glob characters: SCAN must match it literally.
      const [b, ns] = await backend('snap*[x]');
      const [neighbour] = await backend('snap-other');
      const longKey = `k${'y'.repeat(400)}`;
      const request = {
        mode: 'exclusive',
        ttl: 20_000,
        fair: true,
        wait: false,
        waiterTtl: 5_000,
      } as const;
      await b.beat('p1', 10_000, true, INFO);
      const grant = await b.acquire({ ...request, key: 'jobs:1', owner: 'p1:one' });
      assert.ok(grant.granted);
      await b.acquire({ ...request, key: 'jobs:1', owner: 'p2:two', wait: true });
      assert.ok((await b.acquire({ ...request, key: longKey, owner: 'p1:three' })).granted);
      assert.equal(await admin.hget(lockKeys(ns, longKey).lock, 'key'), longKey);
      await b.addReference('record:1', 'p1');
      await b.incrementTimesModified('record:1', 2);
      await b.beat('gone', 10_000, true, INFO);
      await runOutNow(ns, 'gone');
      assert.ok((await neighbour.acquire({ ...request, key: 'jobs:1', owner: 'n:1' })).granted);

      const snapshot = await b.snapshot();
      assert.equal(snapshot.incomplete, undefined);
      const locks = [...snapshot.locks].sort((x, y) => x.key.length - y.key.length);
      assert.deepEqual(
        locks.map((lock) => [lock.key, lock.waiters, lock.holders.map((h) => [h.owner, h.fence])]),
        [
          ['jobs:1', 1, [['p1:one', grant.fence]]],
          [longKey, 0, [['p1:three', locks[1]?.holders[0]?.fence]]],
        ],
      );
      const ttlLeft = locks[0]?.holders[0]?.ttlLeft ?? 0;
      assert.ok(ttlLeft > 15_000 && ttlLeft <= 20_000, `ttlLeft ${String(ttlLeft)}`);
      assert.deepEqual(snapshot.references, [
        { resource: 'record:1', holders: ['p1'], timesModified: 2, completing: false },
      ]);
      const processes = Object.fromEntries(snapshot.processes.map((p) => [p.id, p]));
      assert.deepEqual(Object.keys(processes).sort(), ['gone', 'p1']);
      assert.deepEqual(processes.p1?.info, INFO);
      assert.ok((processes.p1?.ttlLeft ?? 0) > 5_000);
      assert.ok((processes.p1?.heartbeatAge ?? -1) >= 0);
      assert.equal(processes.gone?.ttlLeft, 0, 'dead, listed until reaped');

      assert.equal(await b.release(longKey, 'p1:three'), true);
      assert.equal(await admin.exists(lockKeys(ns, longKey).lock), 0, 'the stored key went too');
    });
  });

  describe('across processes', () => {
    it('recovers the references of a SIGKILLed process on live ones, completing each resource exactly once', async () => {
      const namespace = 'crash';
      await markNamespaceFresh(admin, namespace);
      const survivors = [await disref(namespace), await disref(namespace)];
      const completed: string[] = [];
      survivors.forEach((survivor, index) => {
        survivor.onComplete('job', (resource, { attempt }) => {
          completed.push(`${resource} ${String(attempt)} by ${String(index)}`);
        });
      });
      const doomed = await worker(namespace);
      for (const resource of ['job:1', 'job:2', 'job:3']) await doomed.send(`ref ${resource}`);
      const kept = await survivors[0]?.reference('job:3');
      assert.equal(await kept?.count(), 2);
      await sleep(4 * LIVENESS.heartbeatInterval); // recovery rounds while it lives
      assert.equal(completed.length, 0, 'nothing is recovered from a live process');

      const killedAt = Date.now();
      await doomed.kill('SIGKILL');
      await eventually(
        () => completed.length === 2,
        LIVENESS.processTtl + LIVENESS.heartbeatInterval + 5_000,
        'both orphans completed',
      );
      const took = Date.now() - killedAt;
      await sleep(4 * LIVENESS.heartbeatInterval); // more recovery rounds: nothing runs twice
      assert.deepEqual(
        completed.map((line) => line.split(' by ')[0]).sort(),
        ['job:1 1', 'job:2 1'],
        `completed once each, within ${String(took)} ms`,
      );
      assert.equal(await kept?.count(), 1, 'the dead holder was pruned');
      assert.equal(await kept?.dereference(), true);
      assert.equal(completed.length, 3);
      assert.deepEqual(readLog(join(directory, `${namespace}.log`)), [], 'the killed one did none');
    });

    it('retries a completion whose process was killed while running it, once its claim lapses', async () => {
      const namespace = 'crash-completer';
      await markNamespaceFresh(admin, namespace);
      const log = join(directory, `${namespace}.log`);
      const survivor = await disref(namespace);
      const attempts: number[] = [];
      survivor.onComplete('hang', (_resource, { attempt }) => {
        attempts.push(attempt);
      });
      const completer = await worker(namespace);
      await completer.send('ref hang:1');
      void completer.send('deref hang:1').catch(() => undefined); // never replies: the handler hangs
      await eventually(
        () => readLog(log).includes(`start hang:1 1 ${String(completer.pid)}`),
        10_000,
        'the completion started in the worker',
      );
      await completer.kill('SIGKILL');
      await eventually(() => attempts.length > 0, 10_000, 'the survivor retried it');
      await sleep(4 * LIVENESS.heartbeatInterval);
      assert.deepEqual(attempts, [2]);
      assert.equal(await admin.exists(referenceKey(namespace, 'hang:1')), 0, 'keys deleted');
    });

    it('eight processes dereferencing the same 50 resources at once: one true and one completion per resource', async () => {
      const namespace = 'race';
      await markNamespaceFresh(admin, namespace);
      const [observer] = await backend(namespace);
      const resources = Array.from({ length: 50 }, (_, i) => `batch:${String(i)}`);
      const racers = await Promise.all(Array.from({ length: 8 }, () => worker(namespace, RELAXED)));
      await Promise.all(
        racers.map(async (racer) => {
          for (const resource of resources) await racer.send(`ref ${resource}`);
        }),
      );
      for (const resource of resources) assert.equal(await observer.countReferences(resource), 8);
      // Each in its own random order, all started before any is awaited.
      const replies = await Promise.all(
        racers.map((racer) =>
          racer.send(`derefmany ${[...resources].sort(() => Math.random() - 0.5).join(' ')}`),
        ),
      );
      const lastBy = new Map<string, number[]>();
      replies.forEach((reply, index) => {
        for (const entry of reply.split(' ')) {
          const [resource = '', wasLast] = entry.split('=');
          if (wasLast === 'true') lastBy.set(resource, [...(lastBy.get(resource) ?? []), index]);
        }
      });
      const completions = readLog(join(directory, `${namespace}.log`));
      for (const resource of resources) {
        const last = lastBy.get(resource) ?? [];
        assert.equal(last.length, 1, `${resource}: one true, got ${String(last.length)}`);
        const done = completions.filter((line) => line.startsWith(`${resource} `));
        assert.deepEqual(done, [`${resource} 1 ${String(racers[last[0] ?? -1]?.pid)}`]);
        assert.equal(await admin.exists(referenceKey(namespace, resource)), 0);
      }
    });

    it('a process paused past its processTtl takes a new identity, and its stale reference counts as gone', async () => {
      const namespace = 'pause';
      await markNamespaceFresh(admin, namespace);
      const survivor = await disref(namespace);
      const completed: string[] = [];
      survivor.onComplete('pause', (resource) => {
        completed.push(resource);
      });
      const sleeper = await worker(namespace);
      await sleeper.send('ref pause:1');
      const mine = await survivor.reference('pause:1');
      assert.equal(await mine.count(), 2);

      sleeper.child.kill('SIGSTOP');
      try {
        await eventually(async () => (await mine.count()) === 1, 10_000, 'the paused one pruned');
      } finally {
        sleeper.child.kill('SIGCONT');
      }
      // Straight away: its overdue heartbeat and this dereference race; either way it is stale.
      assert.equal(await sleeper.send('deref pause:1'), 'pause:1 false');
      await eventually(
        async () => (await sleeper.send('id')) !== sleeper.id,
        10_000,
        'a new identity',
      );
      assert.equal(await mine.count(), 1, 'the late dereference changed nothing');
      assert.deepEqual(completed, []);
      await sleeper.send('ref pause:1');
      assert.equal(await mine.count(), 2, 'new references count under the new identity');
      assert.equal(await sleeper.send('deref pause:1'), 'pause:1 false');
      assert.equal(await mine.dereference(), true);
      assert.deepEqual(completed, ['pause:1']);
      assert.deepEqual(readLog(join(directory, `${namespace}.log`)), []);
    });
  });

  describe('disref status', () => {
    it('--json from the built binary shows a lock of another process with fence and time left, and references with holder counts', async () => {
      await markNamespaceFresh(admin, 'disref');
      const holder = await worker('disref', RELAXED);
      const fence = Number((await holder.send('lock jobs:1 30000')).split(' ')[1]);
      await holder.send('ref record:1');
      await holder.send('modify record:1 3');
      const local = await disref('disref');
      await local.reference('record:1');

      const status = async (...args: string[]): Promise<StatusReport> => {
        const child = spawn(process.execPath, [bin, 'status', '--url', server.url, ...args], {
          env: { ...process.env, NO_COLOR: '1', DISREF_URL: '' },
        });
        let stdout = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        const [code] = (await once(child, 'exit')) as [number | null];
        assert.equal(code, 0, stdout);
        return JSON.parse(stdout) as StatusReport;
      };
      const report = await status('--json');
      assert.equal(report.namespace, 'disref');
      assert.equal(report.incomplete, null);
      const lock = report.locks.find((entry) => entry.key === 'jobs:1');
      assert.ok(lock !== undefined, JSON.stringify(report.locks));
      assert.equal(lock.holders.length, 1);
      assert.equal(lock.holders[0]?.process, holder.id);
      assert.equal(lock.holders[0]?.fence, fence);
      const ttlLeft = lock.holders[0]?.ttlLeft ?? 0;
      assert.ok(ttlLeft > 15_000 && ttlLeft <= 30_000, `ttlLeft ${String(ttlLeft)}`);
      assert.deepEqual(report.references, [
        { resource: 'record:1', liveHolders: 2, timesModified: 3, completing: false },
      ]);
      const listed = report.processes.find((entry) => entry.id === holder.id);
      assert.equal(listed?.pid, holder.pid);
      assert.equal(listed.alive, true);
      assert.ok(report.processes.some((entry) => entry.id === local.id));

      const filtered = await status('--json', 'record:');
      assert.deepEqual(filtered.locks, []);
      assert.equal(filtered.references.length, 1);
    });
  });
});
