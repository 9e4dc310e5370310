/**
 * The cross-process acceptance check shared by the Redis and Redis Cluster
 * tests: child processes (test/fixtures/redis-counter-worker.ts) take one
 * lock many times each and increment a counter with a non-atomic GET / SET
 * inside it, reporting each critical section on the system-wide monotonic
 * clock. Every increment must survive and no two sections may overlap.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const worker = fileURLToPath(new URL('../fixtures/redis-counter-worker.ts', import.meta.url));

/** One critical section of one worker, in process.hrtime nanoseconds. */
export interface Section {
  readonly worker: number;
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * Starts `count` processes running `workerPath` with `env` (and
 * `DISREF_TEST_WORKER`, the worker's index), lets them go together once all
 * print "ready" (so they really contend), checks that each exited 0 and
 * ended with "done", and returns what each printed.
 */
export async function runReadyWorkers(
  workerPath: string,
  count: number,
  env: Record<string, string>,
): Promise<string[]> {
  const children = Array.from({ length: count }, (_, index) => {
    const child = spawn(process.execPath, ['--import', 'tsx', workerPath], {
      env: { ...process.env, ...env, DISREF_TEST_WORKER: String(index) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      output += chunk;
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    return { child, exited, output: () => output };
  });
  try {
    const deadline = Date.now() + 30_000;
    while (!children.every(({ output }) => output().startsWith('ready\n'))) {
      assert.ok(Date.now() < deadline, 'workers did not get ready');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const { child } of children) child.stdin.end('go\n');
    const codes = await Promise.all(children.map(({ exited }) => exited));
    assert.deepEqual(
      codes.map(([code]) => code),
      children.map(() => 0),
    );
  } finally {
    for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
  return children.map(({ output }) => {
    assert.match(output(), /\ndone\n$/);
    return output();
  });
}

/**
 * Runs {@link runReadyWorkers} and returns the workers' `section START END`
 * lines as critical sections.
 */
export async function runSectionWorkers(
  workerPath: string,
  count: number,
  env: Record<string, string>,
): Promise<Section[]> {
  const outputs = await runReadyWorkers(workerPath, count, env);
  const sections: Section[] = [];
  outputs.forEach((output, index) => {
    for (const match of output.matchAll(/^section (\d+) (\d+)$/gm)) {
      sections.push({ worker: index, start: BigInt(match[1] ?? ''), end: BigInt(match[2] ?? '') });
    }
  });
  return sections;
}

/**
 * Starts `workers` counter workers on `url` / `namespace` together and
 * returns their critical sections after checking every one exited cleanly.
 */
export async function runCounterWorkers(options: {
  url: string;
  namespace: string;
  workers: number;
  iterations: number;
}): Promise<Section[]> {
  const sections = await runSectionWorkers(worker, options.workers, {
    DISREF_TEST_URL: options.url,
    DISREF_TEST_NAMESPACE: options.namespace,
    DISREF_TEST_ITERATIONS: String(options.iterations),
  });
  assert.equal(sections.length, options.workers * options.iterations);
  return sections;
}

/**
 * Asserts that no two sections overlap in time, and returns how often the
 * lock passed from one process to another.
 */
export function assertNoOverlap(sections: readonly Section[]): number {
  const sorted = [...sections].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let handoffs = 0;
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    const current = sorted[i];
    assert.ok(previous !== undefined && current !== undefined);
    assert.ok(
      current.start >= previous.end,
      `worker ${String(current.worker)} entered at ${String(current.start)} before worker ${String(previous.worker)} left at ${String(previous.end)}`,
    );
    if (current.worker !== previous.worker) handoffs += 1;
  }
  return handoffs;
}
