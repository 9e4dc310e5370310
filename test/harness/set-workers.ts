/**
 * Runs test/fixtures/redis-set-worker.ts in several OS processes that
 * contend for one lock, and checks what they report: every process exited
 * cleanly, every increment survived, and no two critical sections overlap.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { assertNoOverlap, runSectionWorkers } from './counter-workers.js';

const worker = fileURLToPath(new URL('../fixtures/redis-set-worker.ts', import.meta.url));

export async function checkExclusiveAcrossProcesses(options: {
  /** The lock store (redis-quorum:// or redis-sharded://). */
  url: string;
  /** A Redis no test stops, for the counter, and a client on it to read the result. */
  counterUrl: string;
  counter: Redis;
  namespace: string;
  key: string;
  workers: number;
  iterations: number;
}): Promise<void> {
  const sections = await runSectionWorkers(worker, options.workers, {
    DISREF_TEST_URL: options.url,
    DISREF_TEST_COUNTER_URL: options.counterUrl,
    DISREF_TEST_NAMESPACE: options.namespace,
    DISREF_TEST_KEY: options.key,
    DISREF_TEST_ITERATIONS: String(options.iterations),
  });
  const total = options.workers * options.iterations;
  assert.equal(sections.length, total);
  assert.equal(
    await options.counter.get(`${options.namespace}:counter:${options.key}`),
    String(total),
    'an increment was lost: two processes were inside the lock at once',
  );
  assertNoOverlap(sections);
}
