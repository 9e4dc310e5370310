/**
 * The lock conformance suite: every promise the contract makes about locks,
 * checked against one backend target. Every backend runs this same file.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ConflictError,
  InvalidArgumentError,
  LockLostError,
  LockTimeoutError,
  type ConnectOptions,
  type Disref,
  type Lease,
} from '../../src/index.js';
import type { BackendTarget } from '../harness/targets.js';
import { Instances } from './instances.js';

/** Critical sections recorded with monotonic timestamps, checked for overlap. */
class SectionLog {
  private readonly sections: { start: number; end: number; who: string }[] = [];

  async run<T>(who: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.sections.push({ start, end: performance.now(), who });
    }
  }

  assertNoOverlap(): void {
    const sorted = [...this.sections].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const previous = sorted[i - 1];
      const current = sorted[i];
      assert.ok(previous !== undefined && current !== undefined);
      assert.ok(
        current.start >= previous.end,
        `critical sections overlap: ${previous.who} [${String(previous.start)}, ${String(previous.end)}] and ${current.who} starting ${String(current.start)}`,
      );
    }
  }

  get count(): number {
    return this.sections.length;
  }
}

/** Blocks the event loop, as a long GC pause or a stopped process would. */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy wait on purpose
  }
}

export function lockConformance(target: BackendTarget): void {
  const made = new Instances(target, 't');
  const instances = (count: number, options: Partial<ConnectOptions> = {}): Promise<Disref[]> =>
    made.many(count, options);
  const one = (options: Partial<ConnectOptions> = {}): Promise<Disref> => made.one(options);

  describe('mutex', () => {
    it('keeps 100 concurrent callers on one key mutually exclusive', async () => {
      const disrefs = await instances(4);
      const log = new SectionLog();
      let inside = 0;
      let counter = 0;
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const disref = disrefs[i % disrefs.length];
          assert.ok(disref !== undefined);
          await disref.lock('counter', { ttl: 10_000 }).using(() =>
            log.run(`caller ${String(i)}`, async () => {
              inside += 1;
              assert.equal(inside, 1, 'two callers inside the lock');
              const read = counter;
              await sleep(1);
              counter = read + 1;
              inside -= 1;
            }),
          );
        }),
      );
      assert.equal(counter, 100);
      assert.equal(log.count, 100);
      log.assertNoOverlap();
    });

    it('hands out strictly increasing fences, including after a lease expired', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const fences: number[] = [];
      for (let i = 0; i < 5; i++) {
        const lease = await a.lock('fenced').acquire();
        fences.push(lease.fence);
        await lease.release();
      }
      const expiring = await a.lock('fenced', { ttl: 100 }).acquire();
      fences.push(expiring.fence);
      await sleep(150); // runs out without a release
      const next = await b.lock('fenced').acquire({ timeout: 5_000 });
      fences.push(next.fence);
      await next.release();
      for (let i = 1; i < fences.length; i++) {
        const previous = fences[i - 1] ?? Infinity;
        assert.ok(
          (fences[i] ?? -Infinity) > previous,
          `fence ${String(fences[i])} after ${String(previous)}`,
        );
      }
      assert.ok(fences.every((fence) => Number.isSafeInteger(fence) && fence > 0));
    });

    it('never lets a stale lease, released late, free the new holder', async () => {
      const [a, b, c] = await instances(3);
      assert.ok(a !== undefined && b !== undefined && c !== undefined);
      const stale = await a.lock('stale', { ttl: 100 }).acquire();
      await sleep(150);
      const current = await b.lock('stale', { ttl: 10_000 }).acquire({ timeout: 5_000 });
      assert.equal(await stale.release(), false, 'the stale release reports the lease was gone');
      assert.equal(await c.lock('stale').tryAcquire(), null, 'the new holder still holds');
      await assert.rejects(stale.extend(), LockLostError);
      await current.release();
      const free = await c.lock('stale').tryAcquire();
      assert.ok(free !== null);
      await free.release();
    });

    it('tryAcquire resolves null while the lock is held, and a lease once free', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('try').acquire();
      assert.equal(await b.lock('try').tryAcquire(), null);
      await lease.release();
      const second = await b.lock('try').tryAcquire();
      assert.ok(second !== null);
      assert.ok(second.fence > lease.fence);
      await second.release();
    });

    it('acquire with timeout rejects with LockTimeoutError naming the key', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('busy').acquire();
      const started = performance.now();
      await assert.rejects(b.lock('busy', { timeout: 150 }).acquire(), (error: unknown) => {
        assert.ok(error instanceof LockTimeoutError);
        assert.equal(error.key, 'busy');
        assert.equal(error.code, 'ERR_DISREF_LOCK_TIMEOUT');
        assert.match(error.message, /lock busy/);
        assert.equal(error.quarantined, false, 'a holder, not a quarantine, was in the way');
        assert.match(error.message, /another holder kept it/);
        return true;
      });
      assert.ok(performance.now() - started >= 140, 'waited the timeout out');
      await assert.rejects(b.lock('busy').acquire({ timeout: 0 }), LockTimeoutError);
      await lease.release();
    });

    it('an abort signal stops the wait with its reason', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('abortable').acquire();
      const controller = new AbortController();
      const waiting = b.lock('abortable').acquire({ signal: controller.signal });
      setTimeout(() => {
        controller.abort(new Error('caller gave up'));
      }, 50);
      await assert.rejects(waiting, /caller gave up/);
      const lockSignal = AbortSignal.timeout(50);
      await assert.rejects(b.lock('abortable', { signal: lockSignal }).acquire(), {
        name: 'TimeoutError',
      });
      await assert.rejects(
        b.lock('abortable').acquire({ signal: AbortSignal.abort(new Error('already')) }),
        /already/,
      );
      await lease.release();
      // Nobody was left holding or queued: the lock is free at once.
      const free = await b.lock('abortable').tryAcquire();
      assert.ok(free !== null);
      await free.release();
    });

    it('using() keeps a 200 ms lease alive for 1 s of work, then releases', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      let probes = 0;
      const result = await a.lock('long-work', { ttl: 200 }).using(async (lease) => {
        for (let i = 0; i < 10; i++) {
          await sleep(100);
          assert.equal(
            await b.lock('long-work').tryAcquire(),
            null,
            'someone got in during the work',
          );
          lease.check();
          probes += 1;
        }
        assert.equal(lease.signal.aborted, false);
        return 'done';
      });
      assert.equal(result, 'done');
      assert.equal(probes, 10);
      const after = await b.lock('long-work').tryAcquire();
      assert.ok(after !== null, 'using() released the lock');
      await after.release();
    });

    it('aborts lease.signal with LockLostError when a lease runs out', async () => {
      const disref = await one();
      const lease = await disref.lock('expiring', { ttl: 100 }).acquire();
      assert.equal(lease.signal.aborted, false);
      // The expiry timer is unref'd (it must not keep a process alive): keep this test alive.
      const reason = await Promise.race([
        new Promise<unknown>((resolve) => {
          lease.signal.addEventListener('abort', () => {
            resolve(lease.signal.reason);
          });
        }),
        sleep(2_000, 'no abort within 2 s'),
      ]);
      assert.ok(reason instanceof LockLostError);
      assert.equal(reason.key, 'expiring');
      assert.equal(reason.fence, lease.fence);
      assert.throws(() => {
        lease.check();
      }, LockLostError);
    });

    it('lease.check() throws LockLostError after the event loop was blocked past the lease, with no round trip', async () => {
      const disref = await one();
      const lease = await disref.lock('paused', { ttl: 150 }).acquire();
      lease.check(); // valid now
      blockEventLoop(200); // no timers, no I/O can run: check() must know on its own
      assert.throws(
        () => {
          lease.check();
        },
        (error: unknown) => error instanceof LockLostError && error.fence === lease.fence,
      );
      assert.equal(lease.signal.aborted, true);
      assert.equal(await lease.release(), false);
    });

    it('using() aborts the signal and rejects with LockLostError when the lease is lost', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      let sawAbort = false;
      await assert.rejects(
        a.lock('lost-in-use', { ttl: 150 }).using(async (lease) => {
          blockEventLoop(200); // extension timers could not run
          await sleep(20);
          sawAbort = lease.signal.aborted;
        }),
        LockLostError,
      );
      assert.equal(sawAbort, true);
      const free = await b.lock('lost-in-use').acquire({ timeout: 2_000 });
      await free.release();
    });

    it('extend() prolongs the lease; release() is idempotent; await using releases', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('extend', { ttl: 150 }).acquire();
      await sleep(100);
      await lease.extend(400);
      await sleep(100);
      assert.equal(await b.lock('extend').tryAcquire(), null, 'extended lease still held');
      lease.check();
      assert.equal(await lease.release(), true);
      assert.equal(await lease.release(), false);
      await assert.rejects(lease.extend(), LockLostError);
      {
        await using scoped = await a.lock('scoped').acquire();
        assert.equal(await b.lock('scoped').tryAcquire(), null);
        assert.ok(scoped.fence > 0);
      }
      const after = await b.lock('scoped').tryAcquire();
      assert.ok(after !== null, 'await using released at block end');
      await after.release();
    });

    it('using() releases when the work throws, and passes the error through', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      await assert.rejects(
        a.lock('throws').using(() => {
          throw new Error('work failed');
        }),
        /work failed/,
      );
      const free = await b.lock('throws').tryAcquire();
      assert.ok(free !== null);
      await free.release();
    });

    it("wakes a waiter when the lock is released, not at the holder's expiry", async (t) => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      if (!a.backend.capabilities.notify) {
        t.diagnostic(`${target.name} cannot notify; waiters poll at retryInterval`);
      }
      const lease = await a.lock('wake', { ttl: 20_000 }).acquire();
      let releasedAt = 0;
      setTimeout(() => {
        releasedAt = performance.now();
        void lease.release();
      }, 100);
      const next = await b.lock('wake', { retryInterval: 20 }).acquire({ timeout: 10_000 });
      const latency = performance.now() - releasedAt;
      await next.release();
      // Far below the holder's 20 s lease and the 1 s safety-net poll: a generous bound, not a speed claim.
      assert.ok(
        releasedAt > 0 && latency < 900,
        `woken ${latency.toFixed(0)} ms after the release`,
      );
    });

    it('separate keys do not block each other', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const first = await a.lock('key-one').acquire();
      const second = await b.lock('key-two').tryAcquire();
      assert.ok(second !== null);
      await Promise.all([first.release(), second.release()]);
    });

    it('close() releases the leases an instance still holds, and refuses new work', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      await a.lock('closing').acquire();
      await a.close();
      const lease = await b.lock('closing').tryAcquire();
      assert.ok(lease !== null, 'the closed instance released its lease');
      await lease.release();
      await assert.rejects(a.lock('closing').acquire(), /closed/);
    });
  });

  describe('fairness', () => {
    it('grants waiters in arrival order when fair (where the backend can queue)', async (t) => {
      const disrefs = await instances(5);
      const [holder] = disrefs;
      assert.ok(holder !== undefined);
      if (!holder.backend.capabilities.fifo) {
        assert.throws(() => holder.lock('fifo', { fair: true }), InvalidArgumentError);
        t.diagnostic(`${target.name} cannot queue waiters: fair: true is refused`);
        return;
      }
      const lease = await holder.lock('fifo').acquire();
      const order: number[] = [];
      const waiters: Promise<void>[] = [];
      for (let i = 1; i < disrefs.length; i++) {
        const disref = disrefs[i];
        assert.ok(disref !== undefined);
        waiters.push(
          disref.lock('fifo').using(async () => {
            order.push(i);
            await sleep(5);
          }),
        );
        await sleep(30); // arrive one after another
      }
      await lease.release();
      await Promise.all(waiters);
      assert.deepEqual(order, [1, 2, 3, 4]);
    });

    it('a waiter that gives up leaves the queue and does not block the next one', async (t) => {
      const [a, b, c] = await instances(3);
      assert.ok(a !== undefined && b !== undefined && c !== undefined);
      if (!a.backend.capabilities.fifo) {
        t.diagnostic(`${target.name} has no queue`);
        return;
      }
      const lease = await a.lock('queue').acquire();
      const quitter = b.lock('queue').acquire({ timeout: 100 });
      await sleep(20);
      const patient = c.lock('queue').acquire({ timeout: 10_000 });
      await assert.rejects(quitter, LockTimeoutError);
      await lease.release();
      const next = await patient;
      await next.release();
    });

    it('fair: false is accepted and grants without queueing', async () => {
      const [a, b] = await instances(2, { defaults: { fair: false } });
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('barging').acquire();
      await lease.release();
      const again = await b.lock('barging').tryAcquire();
      assert.ok(again !== null);
      await again.release();
    });
  });

  describe('rlock', () => {
    it('nests inside one async call chain and needs as many releases', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lock = a.rlock('reentrant', { timeout: 1_000 });
      const depths: number[] = [];
      await lock.using(async (outer) => {
        depths.push(1);
        await lock.using(async (inner) => {
          depths.push(2);
          assert.equal(inner.fence, outer.fence, 'nested lease shares the fence');
          const innermost = await lock.acquire();
          depths.push(3);
          await innermost.release();
          assert.equal(
            await b.rlock('reentrant').tryAcquire(),
            null,
            'still held after inner release',
          );
        });
        assert.equal(
          await b.rlock('reentrant').tryAcquire(),
          null,
          'still held by the outer level',
        );
      });
      assert.deepEqual(depths, [1, 2, 3]);
      const free = await b.rlock('reentrant').tryAcquire();
      assert.ok(free !== null, 'released after the outermost level');
      await free.release();
    });

    it('blocks an unrelated concurrent call chain in the same process', async () => {
      const disref = await one();
      const lock = disref.rlock('reentrant-2');
      const log = new SectionLog();
      let order = '';
      await Promise.all([
        lock.using(() =>
          log.run('first', async () => {
            order += 'a';
            await sleep(100);
            order += 'b';
          }),
        ),
        (async () => {
          await sleep(10);
          await lock.using(() =>
            log.run('second', () => {
              order += 'c';
              return Promise.resolve();
            }),
          );
        })(),
      ]);
      assert.equal(order, 'abc');
      log.assertNoOverlap();
    });
  });

  describe('rwlock', () => {
    it('lets readers share and keeps writers exclusive', async (t) => {
      const disrefs = await instances(4);
      const [first] = disrefs;
      assert.ok(first !== undefined);
      if (!first.backend.capabilities.sharedLocks) {
        assert.throws(() => first.rwlock('rw'), InvalidArgumentError);
        t.diagnostic(`${target.name} has no read/write locks: rwlock is refused`);
        return;
      }
      const readers = await Promise.all(
        disrefs.slice(0, 3).map((disref) => disref.rwlock('rw').read().acquire({ timeout: 1_000 })),
      );
      assert.equal(readers.length, 3, 'three readers at once');
      const writerDisref = disrefs[3];
      assert.ok(writerDisref !== undefined);
      assert.equal(
        await writerDisref.rwlock('rw').write().tryAcquire(),
        null,
        'writer waits for readers',
      );
      const writing = writerDisref.rwlock('rw').write().acquire({ timeout: 5_000 });
      await sleep(30);
      // A waiting writer is not starved: new readers queue behind it.
      assert.equal(
        await first.rwlock('rw').read().tryAcquire(),
        null,
        'new reader jumped a waiting writer',
      );
      await Promise.all(readers.map((lease) => lease.release()));
      const writer = await writing;
      assert.equal(
        await first.rwlock('rw').read().tryAcquire(),
        null,
        'reader got in beside a writer',
      );
      assert.equal(await first.rwlock('rw').write().tryAcquire(), null, 'two writers');
      await writer.release();
      const reader = await first.rwlock('rw').read().tryAcquire();
      assert.ok(reader !== null);
      await reader.release();
    });

    it('keeps concurrent writers and readers consistent', async (t) => {
      const disrefs = await instances(3);
      const [first] = disrefs;
      assert.ok(first !== undefined);
      if (!first.backend.capabilities.sharedLocks) {
        t.diagnostic(`${target.name} has no read/write locks`);
        return;
      }
      const state = { value: 0, writing: false };
      const seen: number[] = [];
      await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const disref = disrefs[i % disrefs.length];
          assert.ok(disref !== undefined);
          const rw = disref.rwlock('rw-mixed');
          if (i % 3 === 0) {
            await rw.write().using(async () => {
              state.writing = true;
              const read = state.value;
              await sleep(2);
              state.value = read + 1;
              state.writing = false;
            });
          } else {
            await rw.read().using(async () => {
              assert.equal(state.writing, false, 'a reader saw a write in progress');
              seen.push(state.value);
              await sleep(1);
            });
          }
        }),
      );
      assert.equal(state.value, 10);
      assert.equal(seen.length, 20);
    });
  });

  describe('conflictLock', () => {
    class VersionConflict extends Error {}
    const isConflict = (error: unknown): boolean => error instanceof VersionConflict;

    it('re-runs the work under the lock after a conflict', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const runs: { attempt: number; held: boolean; fence: number | undefined }[] = [];
      const result = await a
        .conflictLock('zlock', { isConflict })
        .run(async ({ attempt, lease }) => {
          runs.push({ attempt, held: lease !== undefined, fence: lease?.fence });
          if (lease !== undefined) {
            assert.equal(
              await b.lock('zlock').tryAcquire(),
              null,
              'retry runs while holding the lock',
            );
          }
          if (attempt < 2) throw new VersionConflict('stale version');
          return 'committed';
        });
      assert.equal(result, 'committed');
      assert.deepEqual(
        runs.map(({ attempt, held }) => [attempt, held]),
        [
          [0, false],
          [1, true],
          [2, true],
        ],
      );
      assert.equal(runs[1]?.fence, runs[2]?.fence, 'the lock stays reserved between retries');
      const free = await b.lock('zlock').tryAcquire();
      assert.ok(free !== null, 'released after the work');
      await free.release();
    });

    it('gives ConflictError with the last cause after `retries` re-runs', async () => {
      const disref = await one();
      let runs = 0;
      await assert.rejects(
        disref.conflictLock('zlock-fail', { isConflict, retries: 2 }).run(() => {
          runs += 1;
          throw new VersionConflict(`conflict ${String(runs)}`);
        }),
        (error: unknown) => {
          assert.ok(error instanceof ConflictError);
          assert.equal(error.key, 'zlock-fail');
          assert.equal(error.attempts, 3);
          assert.ok(error.cause instanceof VersionConflict);
          assert.equal(error.cause.message, 'conflict 3');
          return true;
        },
      );
      assert.equal(runs, 3);
    });

    it('stops at the first error that is not a conflict', async () => {
      const disref = await one();
      let runs = 0;
      await assert.rejects(
        disref.conflictLock('zlock-other', { isConflict }).run(() => {
          runs += 1;
          throw new TypeError('bug');
        }),
        TypeError,
      );
      assert.equal(runs, 1);
    });

    it('waits for and takes the lock when it is busy, instead of running optimistically', async () => {
      const [a, b] = await instances(2);
      assert.ok(a !== undefined && b !== undefined);
      const lease = await a.lock('zlock-busy').acquire();
      setTimeout(() => void lease.release(), 100);
      const run = await b
        .conflictLock('zlock-busy', { isConflict })
        .run(({ attempt, lease: held }) => ({
          attempt,
          held: held !== undefined,
        }));
      assert.deepEqual(run, { attempt: 0, held: true });
    });
  });

  describe('store data loss', () => {
    it('grants nothing until the longest lease could have run out, and keeps fences increasing', async () => {
      const [a, b] = await instances(2, { maxTtl: 1_000 });
      assert.ok(a !== undefined && b !== undefined);
      const old: Lease = await a.lock('lossy', { ttl: 600 }).acquire();
      await target.loseAllData(a);
      const lostAt = performance.now();
      assert.equal(
        await a.lock('lossy').tryAcquire(),
        null,
        'granted while an old lease may be live',
      );
      const fresh = await b.lock('lossy', { ttl: 1_000 }).acquire({ timeout: 5_000 });
      const waited = performance.now() - lostAt;
      assert.ok(
        waited >= 500,
        `new lease after ${waited.toFixed(0)} ms, before the old one could end`,
      );
      assert.ok(fresh.fence > old.fence, 'fences stay monotonic across data loss');
      await assert.rejects(old.extend(), LockLostError);
      await fresh.release();
    });

    it('a wait that the quarantine outlasts says so, instead of blaming a holder; status shows it', async () => {
      const [a, b] = await instances(2, { maxTtl: 2_000 });
      assert.ok(a !== undefined && b !== undefined);
      const old: Lease = await a.lock('lossy-timeout', { ttl: 1_000 }).acquire();
      assert.equal((await b.backend.snapshot()).quarantineLeft, undefined, 'no quarantine yet');
      await target.loseAllData(a);
      for (const disref of [a, b]) {
        await assert.rejects(
          disref.lock('lossy-timeout').acquire({ timeout: 200 }),
          (error: unknown) => {
            assert.ok(error instanceof LockTimeoutError, `got ${String(error)}`);
            assert.equal(error.quarantined, true);
            assert.equal(error.key, 'lossy-timeout');
            assert.match(error.message, /lock lossy-timeout: not acquired within 200 ms/);
            assert.match(error.message, /quarantine/);
            assert.doesNotMatch(error.message, /another holder/);
            // Seconds left: at most maxTtl (memcached counts whole seconds, rounded up).
            const left = Number(/about (\d+\.\d) s more/.exec(error.message)?.[1]);
            assert.ok(left > 0 && left <= 2 + 2, `quarantine left: ${String(left)} s`);
            return true;
          },
        );
      }
      const { quarantineLeft } = await b.backend.snapshot();
      assert.ok(
        quarantineLeft !== undefined && quarantineLeft > 0 && quarantineLeft <= 4_000,
        `status shows the quarantine: ${String(quarantineLeft)} ms left`,
      );
      await old.release();
    });
  });
}
