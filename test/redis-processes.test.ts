/**
 * The acceptance test for the Redis backend across OS processes: four child
 * processes take one lock 200 times each and increment a Redis counter with
 * a non-atomic GET / SET inside it. Every increment must survive (800), and
 * no two critical sections may overlap in time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const WORKERS = 4;
const ITERATIONS = 200;
const worker = fileURLToPath(new URL('./fixtures/redis-counter-worker.ts', import.meta.url));

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis cross-process test: ${unavailable} ***\n`);
}

interface Section {
  readonly worker: number;
  readonly start: bigint;
  readonly end: bigint;
}

describe('redis across processes', { skip: !requireServers && unavailable }, () => {
  let server: RedisServer;
  let admin: Redis;

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await RedisServer.start();
    admin = new Redis(server.port, '127.0.0.1');
  });
  after(async () => {
    admin.disconnect();
    await server.dispose();
  });

  it(`${String(WORKERS)} processes x ${String(ITERATIONS)} locked GET/SET increments: none lost, no overlap`, async () => {
    const namespace = 'processes';
    await markNamespaceFresh(admin, namespace);
    const children = Array.from({ length: WORKERS }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', worker], {
        env: {
          ...process.env,
          DISREF_TEST_URL: server.url,
          DISREF_TEST_NAMESPACE: namespace,
          DISREF_TEST_ITERATIONS: String(ITERATIONS),
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
        Array.from({ length: WORKERS }, () => 0),
      );
    } finally {
      for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL');
    }

    const sections: Section[] = [];
    children.forEach(({ output }, index) => {
      assert.match(output(), /\ndone\n$/);
      for (const line of output().split('\n')) {
        const match = /^section (\d+) (\d+)$/.exec(line);
        if (match !== null) {
          sections.push({
            worker: index,
            start: BigInt(match[1] ?? ''),
            end: BigInt(match[2] ?? ''),
          });
        }
      }
    });
    assert.equal(sections.length, WORKERS * ITERATIONS);
    assert.equal(await admin.get(`${namespace}:counter`), String(WORKERS * ITERATIONS));
    sections.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    let handoffs = 0;
    for (let i = 1; i < sections.length; i++) {
      const previous = sections[i - 1];
      const current = sections[i];
      assert.ok(previous !== undefined && current !== undefined);
      assert.ok(
        current.start >= previous.end,
        `worker ${String(current.worker)} entered at ${String(current.start)} before worker ${String(previous.worker)} left at ${String(previous.end)}`,
      );
      if (current.worker !== previous.worker) handoffs += 1;
    }
    // Fair locking under contention hands the lock between processes, not to the same one again.
    assert.ok(handoffs >= ITERATIONS, `only ${String(handoffs)} hand-offs between processes`);
  });
});
