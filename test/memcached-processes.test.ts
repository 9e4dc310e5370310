/**
 * The acceptance test for the memcached backend across OS processes: four
 * child processes take one lock 200 times each and increment a counter kept
 * in memcached with a non-atomic read then write inside it. Every increment
 * must survive (800), no two critical sections may overlap in time, and
 * fences must grow in the order the sections ran.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { assertNoOverlap, runReadyWorkers, type Section } from './harness/counter-workers.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const WORKERS = 4;
const ITERATIONS = 200;
const worker = fileURLToPath(new URL('./fixtures/memcached-counter-worker.ts', import.meta.url));

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the memcached cross-process test: ${unavailable} ***\n`);
}

interface FencedSection extends Section {
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
    // Started together once all are connected, so they really contend.
    const outputs = await runReadyWorkers(worker, WORKERS, {
      DISREF_TEST_SERVERS: servers.map((server) => server.hostPort).join(','),
      DISREF_TEST_NAMESPACE: namespace,
      DISREF_TEST_ITERATIONS: String(ITERATIONS),
    });
    const sections: FencedSection[] = outputs.flatMap((output, index) =>
      [...output.matchAll(/^section (\d+) (\d+) (\d+)$/gm)].map((match) => ({
        worker: index,
        start: BigInt(match[1] ?? ''),
        end: BigInt(match[2] ?? ''),
        fence: Number(match[3]),
      })),
    );
    assert.equal(sections.length, WORKERS * ITERATIONS);
    const counterKey = `${namespace}:counter`;
    const [counter] = await admin.meta(admin.serverFor(counterKey), [
      { command: 'mg', key: counterKey, flags: ['v'] },
    ]);
    assert.equal(counter.value?.toString(), String(WORKERS * ITERATIONS));
    const handoffs = assertNoOverlap(sections);
    sections.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (let i = 1; i < sections.length; i++) {
      const previous = sections[i - 1];
      const current = sections[i];
      assert.ok(previous !== undefined && current !== undefined);
      assert.ok(
        current.fence > previous.fence,
        `fence ${String(current.fence)} after ${String(previous.fence)}`,
      );
    }
    // Otherwise one process could have run all its sections alone: the test would prove nothing.
    assert.ok(handoffs >= WORKERS * 5, `only ${String(handoffs)} hand-offs between processes`);
  });
});
