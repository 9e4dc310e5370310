/**
 * The acceptance test for the Redis backend across OS processes: four child
 * processes take one lock 200 times each and increment a Redis counter with
 * a non-atomic GET / SET inside it. Every increment must survive (800), and
 * no two critical sections may overlap in time.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { assertNoOverlap, runCounterWorkers } from './harness/counter-workers.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const WORKERS = 4;
const ITERATIONS = 200;

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis cross-process test: ${unavailable} ***\n`);
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
    const sections = await runCounterWorkers({
      url: server.url,
      namespace,
      workers: WORKERS,
      iterations: ITERATIONS,
    });
    assert.equal(await admin.get(`${namespace}:counter`), String(WORKERS * ITERATIONS));
    const handoffs = assertNoOverlap(sections);
    // Fair locking under contention hands the lock between processes, not to the same one again.
    assert.ok(handoffs >= ITERATIONS, `only ${String(handoffs)} hand-offs between processes`);
  });
});
