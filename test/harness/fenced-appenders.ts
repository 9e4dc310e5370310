/**
 * A read-modify-write contention check for fenced resources, shared by the
 * memcached and SQL tests (in one process or across processes): each
 * appender reads the resource's log with its fence and writes the log with
 * its fence appended; after a StaleFenceError it moves to a fence above the
 * highest one reported. Appenders use disjoint fences (worker w of W uses
 * w + 1 + k * W).
 *
 * If fences are honoured, no write can come between a successful read and
 * write of the same holder (an older fence is refused since the read, a
 * newer one would have made our write fail), so the final log lists exactly
 * the fences whose writes succeeded, in strictly increasing order: no lost
 * update, and no lower fence ever wrote after a higher one.
 */
import assert from 'node:assert/strict';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { StaleFenceError, type FencedResource } from '../../src/index.js';

/** What one appender did. */
export interface AppendResult {
  /** Fences whose read-modify-write succeeded, in order. */
  readonly written: number[];
  /** Read-modify-writes refused with StaleFenceError. */
  readonly stale: number;
}

/** The smallest fence of worker `worker` (of `workers`) above `floor`. */
function nextFence(floor: number, worker: number, workers: number): number {
  const k = Math.max(0, Math.floor((floor - (worker + 1)) / workers) + 1);
  return k * workers + worker + 1;
}

/** Runs `iterations` read-modify-writes of `resource` as appender `worker` of `workers`. */
export async function appendWithFences(
  resource: FencedResource,
  { worker, workers, iterations }: { worker: number; workers: number; iterations: number },
): Promise<AppendResult> {
  const written: number[] = [];
  let stale = 0;
  let floor = 0;
  for (let i = 0; i < iterations; i++) {
    const fence = nextFence(floor, worker, workers);
    try {
      const log = await resource.read(fence);
      await yieldToLoop(); // widen the window a stale write would need
      await resource.write(fence, log === undefined ? String(fence) : `${log},${String(fence)}`);
      written.push(fence);
      floor = fence;
    } catch (error) {
      if (!(error instanceof StaleFenceError)) throw error;
      assert.ok(error.highest > fence, 'a refused fence is below the highest seen');
      stale += 1;
      floor = error.highest;
    }
  }
  return { written, stale };
}

/** Checks the final log against what the appenders report (see the module doc). */
export function checkAppendLog(final: string | undefined, results: readonly AppendResult[]): void {
  assert.ok(final !== undefined, 'something was written');
  const log = final.split(',').map(Number);
  for (let i = 1; i < log.length; i++) {
    assert.ok(
      (log[i] ?? 0) > (log[i - 1] ?? 0),
      `fence ${String(log[i])} wrote after ${String(log[i - 1])}`,
    );
  }
  const written = results.flatMap((result) => result.written).sort((a, b) => a - b);
  assert.deepEqual(log, written, 'the log holds exactly the successful writes');
  const stale = results.reduce((sum, result) => sum + result.stale, 0);
  assert.ok(stale > 0, 'the appenders really contended (some were refused)');
}

/** Formats an appender's result for a worker's stdout. */
export function formatAppendResult(result: AppendResult): string {
  return `written ${result.written.join(' ')}\nstale ${String(result.stale)}\n`;
}

/** Parses {@link formatAppendResult} from a worker's stdout. */
export function parseAppendResult(output: string): AppendResult {
  const written = /^written ?(.*)$/m.exec(output)?.[1] ?? '';
  const stale = /^stale (\d+)$/m.exec(output)?.[1];
  assert.ok(stale !== undefined, `no result in ${output}`);
  return {
    written: written === '' ? [] : written.split(' ').map(Number),
    stale: Number(stale),
  };
}
