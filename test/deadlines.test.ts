/**
 * The shared deadline timer that bounds store operations (src/deadlines.ts):
 * an operation that never answers is failed once its time is up, not before;
 * operations that answer are never failed, however many run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineQueue } from '../src/deadlines.js';
import { aliveAfter } from './harness/alive-after.js';

describe('DeadlineQueue', () => {
  // The deadline timer never keeps a process alive by itself (a store's socket does).
  let keepAlive: NodeJS.Timeout | undefined;
  before(() => {
    keepAlive = setInterval(() => undefined, 1_000);
  });
  after(() => {
    clearInterval(keepAlive);
  });

  it('fails an operation that never settles once its time is up, and not before', async () => {
    const deadlines = new DeadlineQueue(80);
    const started = performance.now();
    await assert.rejects(
      deadlines.bound(new Promise<never>(() => undefined)),
      /no reply within 80 ms/,
    );
    const waited = performance.now() - started;
    assert.ok(waited >= 79, `not before its deadline: ${waited.toFixed(1)} ms`);
    assert.ok(waited < 2_000, `failed after ${waited.toFixed(1)} ms`);
  });

  it('passes results and errors through, and never fails what settled in time', async () => {
    const deadlines = new DeadlineQueue(60);
    assert.equal(await deadlines.bound(Promise.resolve(7)), 7);
    await assert.rejects(deadlines.bound(Promise.reject(new Error('refused'))), /refused/);
    // Many operations, settling out of order, some after others' deadlines were armed.
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        deadlines.bound(sleep(i % 7 === 0 ? 30 : 0).then(() => i)),
      ),
    );
    assert.deepEqual(
      results,
      Array.from({ length: 500 }, (_, i) => i),
    );
    await sleep(120); // past every deadline: nothing fires late into a settled promise
  });

  it('fails only the operations still open at their deadline, oldest first', async () => {
    const deadlines = new DeadlineQueue(100);
    const failed: number[] = [];
    const settle: (() => void)[] = [];
    const operations = Array.from({ length: 6 }, (_, i) =>
      deadlines
        .bound(
          new Promise<void>((resolve) => {
            settle[i] = resolve;
          }),
        )
        .catch(() => {
          failed.push(i);
        }),
    );
    await sleep(40);
    // A later group, whose deadlines run 40 ms after the first group's.
    const late = deadlines.bound(new Promise<never>(() => undefined)).catch(() => {
      failed.push(6);
    });
    settle[1]?.();
    settle[4]?.();
    await Promise.all(operations);
    assert.deepEqual(failed, [0, 2, 3, 5], 'the first group, without the settled ones');
    await late;
    assert.deepEqual(failed, [0, 2, 3, 5, 6]);
  });

  it('stop() leaves no timer behind, and what was open never fires', async () => {
    let fired = false;
    const alive = await aliveAfter(() => {
      const deadlines = new DeadlineQueue(10_000);
      void deadlines.bound(new Promise<never>(() => undefined)).catch(() => {
        fired = true;
      });
      deadlines.stop();
      return Promise.resolve();
    });
    assert.deepEqual(alive, [], 'no timer after stop()');
    assert.equal(fired, false);
  });
});
