/**
 * Runs test/fixtures/redis-set-worker.ts in several OS processes that
 * contend for one lock, and checks what they report: every process exited
 * cleanly, every increment survived, and no two critical sections overlap.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

const worker = fileURLToPath(new URL('../fixtures/redis-set-worker.ts', import.meta.url));

interface Section {
  readonly worker: number;
  readonly start: bigint;
  readonly end: bigint;
}

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
  const children = Array.from({ length: options.workers }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', worker], {
      env: {
        ...process.env,
        DISREF_TEST_URL: options.url,
        DISREF_TEST_COUNTER_URL: options.counterUrl,
        DISREF_TEST_NAMESPACE: options.namespace,
        DISREF_TEST_KEY: options.key,
        DISREF_TEST_ITERATIONS: String(options.iterations),
      },
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
    // Start them together once all are connected, so they really contend.
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
  const sections: Section[] = [];
  children.forEach(({ output }, index) => {
    assert.match(output(), /\ndone\n$/);
    for (const match of output().matchAll(/^section (\d+) (\d+)$/gm)) {
      sections.push({ worker: index, start: BigInt(match[1] ?? ''), end: BigInt(match[2] ?? '') });
    }
  });
  const total = options.workers * options.iterations;
  assert.equal(sections.length, total);
  assert.equal(
    await options.counter.get(`${options.namespace}:counter:${options.key}`),
    String(total),
    'an increment was lost: two processes were inside the lock at once',
  );
  sections.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  for (let i = 1; i < sections.length; i++) {
    const previous = sections[i - 1];
    const current = sections[i];
    assert.ok(previous !== undefined && current !== undefined);
    assert.ok(
      current.start >= previous.end,
      `worker ${String(current.worker)} entered at ${String(current.start)} before worker ${String(previous.worker)} left at ${String(previous.end)}`,
    );
  }
}
