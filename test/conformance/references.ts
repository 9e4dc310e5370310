/**
 * The reference conformance suite: counting, "last one out" completion,
 * failures and recovery, checked against one backend target with several
 * `Disref` instances standing for several processes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  InvalidArgumentError,
  type CompletionInfo,
  type ConnectOptions,
  type Disref,
} from '../../src/index.js';
import type { BackendTarget } from '../harness/targets.js';
import { Instances } from './instances.js';
import { eventually } from '../harness/eventually.js';

/** Fast liveness so crash recovery happens within a test. */
const FAST = { heartbeatInterval: 50, processTtl: 250 } as const;

export function referenceConformance(target: BackendTarget): void {
  const made = new Instances(target, 'r');
  const instances = (count: number, options: Partial<ConnectOptions> = {}): Promise<Disref[]> =>
    made.many(count, options);
  const pair = (options: Partial<ConnectOptions> = {}): Promise<[Disref, Disref]> =>
    made.pair(options);

  describe('references', () => {
    it('counts live holders, one per process, and times modified', async () => {
      const [a, b] = await pair();
      const ra = await a.reference('record:count');
      assert.equal(await a.reference('record:count'), ra, 'a second reference() returns the same');
      assert.equal(await ra.count(), 1);
      const rb = await b.reference('record:count');
      assert.equal(await ra.count(), 2);
      assert.equal(await rb.count(), 2);
      assert.equal(await ra.incrementTimesModified(), 1);
      assert.equal(await rb.incrementTimesModified(2), 3);
      assert.equal(await ra.timesModified(), 3);
      assert.equal(ra.kind, 'record');
      assert.deepEqual(a.openReferences(), ['record:count']);
      assert.equal(await ra.dereference(() => undefined), false);
      assert.equal(await rb.dereference(() => undefined), true);
    });

    it('runs the completion once, in the last process out, then deletes the keys', async () => {
      const [a, b] = await pair();
      const completed: { by: string; resource: string; info: Omit<CompletionInfo, 'signal'> }[] =
        [];
      for (const [name, disref] of [
        ['a', a],
        ['b', b],
      ] as const) {
        disref.onComplete('order', (resource, { attempt, timesModified }) => {
          completed.push({ by: name, resource, info: { attempt, timesModified } });
        });
      }
      const ra = await a.reference('order:7');
      const rb = await b.reference('order:7');
      await ra.incrementTimesModified();
      await rb.incrementTimesModified();
      assert.equal(await rb.dereference(), false);
      assert.deepEqual(completed, []);
      assert.equal(await ra.dereference(), true);
      assert.deepEqual(completed, [
        { by: 'a', resource: 'order:7', info: { attempt: 1, timesModified: 2 } },
      ]);
      assert.equal(await ra.dereference(), false, 'a second dereference is a no-op');
      assert.equal(await ra.count(), 0);
      assert.equal(await ra.timesModified(), 0, 'keys deleted: a new lifetime starts at zero');
      await a.recover();
      await b.recover();
      assert.equal(completed.length, 1, 'recovery did not run it again');
    });

    /** Two processes with a handler for `kind` whose first run waits until `release()`. */
    async function heldFirstCompletion(kind: string): Promise<{
      a: Disref;
      b: Disref;
      runs: string[];
      release: () => void;
    }> {
      const [a, b] = await pair();
      const runs: string[] = [];
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      for (const disref of [a, b]) {
        disref.onComplete(kind, async (resource, { attempt, timesModified }) => {
          runs.push(`${resource} attempt ${String(attempt)} modified ${String(timesModified)}`);
          if (runs.length === 1) await gate;
        });
      }
      return { a, b, runs, release };
    }

    it('keeps what holders who came while the completion ran modified, for their own completion', async () => {
      const { a, b, runs, release } = await heldFirstCompletion('shift');
      const ra = await a.reference('shift:1');
      await ra.incrementTimesModified(2);
      const first = ra.dereference();
      await eventually(() => runs.length === 1, 5_000, 'the first completion started');
      const rb = await b.reference('shift:1'); // the next lifetime begins
      await rb.incrementTimesModified(3);
      release();
      assert.equal(await first, true);
      await rb.incrementTimesModified(4);
      assert.equal(await rb.timesModified(), 7, 'nothing modified during the completion is lost');
      assert.equal(await rb.dereference(), true);
      assert.deepEqual(runs, ['shift:1 attempt 1 modified 2', 'shift:1 attempt 1 modified 7']);
    });

    it('completes a lifetime that began and ended while the previous completion ran', async () => {
      const { a, b, runs, release } = await heldFirstCompletion('shift');
      const ra = await a.reference('shift:2');
      await ra.incrementTimesModified();
      const first = ra.dereference();
      await eventually(() => runs.length === 1, 5_000, 'the first completion started');
      const rb = await b.reference('shift:2');
      await rb.incrementTimesModified(5);
      // The last one out of its lifetime, but a completion still runs: its own is queued.
      assert.equal(await rb.dereference(), false);
      release();
      assert.equal(await first, true);
      await eventually(
        async () => {
          await Promise.all([a.recover(), b.recover()]);
          return runs.length === 2;
        },
        5_000,
        'the second lifetime completed',
      );
      assert.deepEqual(runs, ['shift:2 attempt 1 modified 1', 'shift:2 attempt 1 modified 5']);
      assert.equal(await rb.timesModified(), 0, 'keys deleted after the second completion');
    });

    it('prefers the callback passed to dereference over the kind handler', async () => {
      const [a] = await pair();
      const calls: string[] = [];
      a.onComplete('job', () => {
        calls.push('handler');
      });
      const ref = await a.reference('job:1');
      assert.equal(
        await ref.dereference((resource) => void calls.push(`callback ${resource}`)),
        true,
      );
      assert.deepEqual(calls, ['callback job:1']);
    });

    it('gives exactly one true among concurrent dereferences, and one completion', async () => {
      const disrefs = await instances(6);
      let completions = 0;
      const refs = await Promise.all(disrefs.map((disref) => disref.reference('batch:1')));
      assert.equal(await refs[0]?.count(), 6);
      const results = await Promise.all(
        refs.map((ref) =>
          ref.dereference(async () => {
            completions += 1;
            await sleep(5);
          }),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      assert.equal(completions, 1);
    });

    it('retries a failing completion through recovery, never concurrently, with the attempt number', async () => {
      const [a, b] = await pair(FAST);
      const attempts: number[] = [];
      let running = 0;
      let overlapped = false;
      const handler = async (_resource: string, { attempt }: CompletionInfo): Promise<void> => {
        running += 1;
        overlapped ||= running > 1;
        attempts.push(attempt);
        await sleep(10);
        running -= 1;
        if (attempt < 3) throw new Error(`flaky ${String(attempt)}`);
      };
      a.onComplete('flaky', handler);
      b.onComplete('flaky', handler);
      const ref = await a.reference('flaky:1');
      await assert.rejects(ref.dereference(), /flaky 1/);
      await eventually(() => attempts.includes(3), 5_000, 'the completion succeeded on retry');
      await sleep(200); // more heartbeats: it must not run again
      assert.deepEqual(attempts, [1, 2, 3]);
      assert.equal(overlapped, false);
      assert.equal(await ref.count(), 0);
    });

    it('recovers the references of a process that stopped heartbeating, and completes on a live one', async () => {
      const [crashed, survivor] = await pair(FAST);
      const completed: string[] = [];
      survivor.onComplete('upload', (resource) => {
        completed.push(resource);
      });
      const lost = await crashed.reference('upload:1');
      const kept = await survivor.reference('upload:2');
      await crashed.reference('upload:2');
      assert.equal(await kept.count(), 2);
      // close() with open references stops the heartbeat but keeps the registration: like a crash.
      await crashed.close();
      assert.equal(lost.held, true);
      await eventually(() => completed.includes('upload:1'), 5_000, 'the orphan was completed');
      assert.equal(await kept.count(), 1, 'the dead holder was pruned');
      assert.equal(await kept.dereference(), true, 'the survivor is now the last');
      assert.deepEqual(completed.sort(), ['upload:1', 'upload:2']);
    });

    it('keeps heartbeating while recovery runs a completion longer than processTtl', async () => {
      const [crashed, survivor] = await pair(FAST);
      const identity = survivor.id;
      let finished = false;
      survivor.onComplete('slow', async () => {
        await sleep(3 * FAST.processTtl);
        finished = true;
      });
      const kept = await survivor.reference('kept:1');
      await crashed.reference('slow:1');
      await crashed.close(); // a crash: recovery on the survivor runs the slow completion
      await eventually(() => finished, 5_000, 'the orphan was completed');
      assert.equal(survivor.id, identity, 'the survivor was not declared dead meanwhile');
      assert.equal(kept.held, true);
      assert.equal(await kept.count(), 1, 'its reference was not pruned');
      assert.equal(await kept.dereference(), true);
    });

    it('loses nothing when every process but one dies', async () => {
      const disrefs = await instances(4, FAST);
      const [survivor, ...doomed] = disrefs;
      assert.ok(survivor !== undefined);
      const completed = new Map<string, number>();
      survivor.onComplete('part', (resource) => {
        completed.set(resource, (completed.get(resource) ?? 0) + 1);
      });
      for (const [i, disref] of doomed.entries()) {
        await disref.reference(`part:${String(i)}`);
        await disref.reference('part:shared');
      }
      await Promise.all(doomed.map((disref) => disref.close()));
      await eventually(() => completed.size === 4, 5_000, 'all four resources completed');
      await sleep(150);
      assert.deepEqual([...completed.entries()].sort(), [
        ['part:0', 1],
        ['part:1', 1],
        ['part:2', 1],
        ['part:shared', 1],
      ]);
    });

    it('lets a completion whose handler is missing here wait for a process that has one', async () => {
      const [a, b] = await pair(FAST);
      const ref = await a.reference('report:1');
      const warned = new Promise<Error>((resolve) => process.once('warning', resolve));
      assert.equal(await ref.dereference(), true);
      assert.match((await warned).message, /no completion handler/);
      const completed: string[] = [];
      b.onComplete('report', (resource) => {
        completed.push(resource);
      });
      await eventually(() => completed.length === 1, 5_000, 'b completed it');
    });

    it('rejects bad resources, kinds and handlers', async () => {
      const [a] = await pair();
      await assert.rejects(a.reference(''), InvalidArgumentError);
      await assert.rejects(a.reference('a\nb'), InvalidArgumentError);
      assert.throws(() => a.onComplete('a:b', () => undefined), InvalidArgumentError);
      assert.throws(() => a.onComplete('kind', 'nope' as never), InvalidArgumentError);
      a.onComplete('kind', () => undefined);
      assert.throws(() => a.onComplete('kind', () => undefined), InvalidArgumentError);
      const ref = await a.reference('kind:1');
      await assert.rejects(ref.incrementTimesModified(0), InvalidArgumentError);
      await assert.rejects(ref.dereference('x' as never), InvalidArgumentError);
      assert.equal(await ref.dereference(), true);
      await assert.rejects(ref.incrementTimesModified(), InvalidArgumentError);
    });
  });
}
