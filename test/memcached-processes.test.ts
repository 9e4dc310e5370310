/**
 * The acceptance test for the memcached backend across OS processes: four
 * child processes take one lock 200 times each and increment a counter kept
 * in memcached with a non-atomic read then write inside it. Every increment
 * must survive (800), no two critical sections may overlap in time, and
 * fences must grow in the order the sections ran.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const WORKERS = 4;
const ITERATIONS = 200;
const worker = fileURLToPath(new URL('./fixtures/memcached-counter-worker.ts', import.meta.url));

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the memcached cross-process test: ${unavailable} ***\n`);
}

interface Section {
  readonly worker: number;
  readonly start: bigint;
  readonly end: bigint;
  readonly fence: number;
}

describe('memcached across processes', { skip: !requireServers && unavailable }, () => {
  let servers: MemcachedServer[];
  let admin: MemcachedClient;

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    servers = await MemcachedServer.startMany(2);
    admin = new MemcachedClient({
      servers: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
    });
  });
  after(async () => {
    admin.close();
    await Promise.all(servers.map((server) => server.stop()));
  });

  it(`${String(WORKERS)} processes x ${String(ITERATIONS)} locked read/write increments: none lost, no overlap`, async () => {
    const namespace = 'processes';
    await markNamespaceFresh(admin, namespace);
    const children = Array.from({ length: WORKERS }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', worker], {
        env: {
          ...process.env,
          DISREF_TEST_SERVERS: servers.map((server) => server.hostPort).join(','),
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
        const match = /^section (\d+) (\d+) (\d+)$/.exec(line);
        if (match !== null) {
          sections.push({
            worker: index,
            start: BigInt(match[1] ?? ''),
            end: BigInt(match[2] ?? ''),
            fence: Number(match[3]),
          });
        }
      }
    });
    assert.equal(sections.length, WORKERS * ITERATIONS);
    const counterKey = `${namespace}:counter`;
    const [counter] = await admin.meta(admin.serverFor(counterKey), [
      { command: 'mg', key: counterKey, flags: ['v'] },
    ]);
    assert.equal(counter.value?.toString(), String(WORKERS * ITERATIONS));
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
      assert.ok(
        current.fence > previous.fence,
        `fence ${String(current.fence)} after ${String(previous.fence)}`,
      );
      if (current.worker !== previous.worker) handoffs += 1;
    }
    // Otherwise one process could have run all its sections alone: the test would prove nothing.
    assert.ok(handoffs >= WORKERS * 5, `only ${String(handoffs)} hand-offs between processes`);
  });
});
