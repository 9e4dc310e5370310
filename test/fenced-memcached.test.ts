/**
 * Fenced resources: a memcached item guarded by fences and CAS, against a
 * real memcached (one process, then several OS processes contending).
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BackendError,
  connect,
  fencedMemcachedItem,
  InvalidArgumentError,
  StaleFenceError,
  type Disref,
} from '../src/index.js';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { fencedItemName } from '../src/backends/memcached/fenced-item.js';
import { runReadyWorkers } from './harness/counter-workers.js';
import { appendWithFences, checkAppendLog, parseAppendResult } from './harness/fenced-appenders.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const skip = unavailable !== undefined && process.env.DISREF_REQUIRE_SERVERS !== '1';
if (skip)
  console.warn(`\n*** SKIPPING the fenced memcached item tests: ${unavailable ?? ''} ***\n`);

const worker = fileURLToPath(new URL('./fixtures/memcached-fenced-worker.ts', import.meta.url));

describe('fencedMemcachedItem', { skip: skip ? (unavailable ?? true) : false }, () => {
  let server: MemcachedServer;
  let raw: MemcachedClient;
  let disref: Disref;
  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await MemcachedServer.start();
    raw = new MemcachedClient({ servers: [{ host: '127.0.0.1', port: server.port }] });
    await markNamespaceFresh(raw, 'fenced');
    disref = await connect({ url: `memcached://${server.hostPort}`, namespace: 'fenced' });
  });
  after(async () => {
    await disref.close();
    raw.close();
    await server.stop();
  });

  /** Writes `value` to item `name` with a plain `ms`, as another application would. */
  const writeRaw = async (name: string, value: string | Buffer): Promise<void> => {
    const [reply] = await raw.meta(raw.serverFor(name), [
      { command: 'ms', key: name, value, flags: ['T0'] },
    ]);
    assert.equal(reply.status, 'HD');
  };
  const readRaw = async (name: string): Promise<string | undefined> => {
    const [reply] = await raw.meta(raw.serverFor(name), [
      { command: 'mg', key: name, flags: ['v'] },
    ]);
    return reply.value?.toString();
  };

  it('refuses a write with a fence older than one already written, and writes nothing', async () => {
    const item = fencedMemcachedItem(disref, 'stock:1');
    assert.equal(item.key, 'stock:1');
    assert.equal(await item.read(10), undefined);
    await item.write(10, '100');
    await item.write(10, '110'); // the same holder may write again
    await assert.rejects(item.write(9, '0'), (error: unknown) => {
      assert.ok(error instanceof StaleFenceError);
      assert.equal(error.key, 'stock:1');
      assert.equal(error.fence, 9);
      assert.equal(error.highest, 10);
      return true;
    });
    assert.equal(await item.read(10), '110');
    assert.equal(await readRaw('stock:1'), 'fenced1 10\n110');
  });

  it('refuses a stale read; a read records its fence, so an older holder cannot write any more', async () => {
    const item = fencedMemcachedItem(disref, 'stock:2');
    await item.write(5, 'a');
    assert.equal(await item.read(7), 'a'); // the newer holder only read
    await assert.rejects(item.read(6), (error: unknown) => {
      assert.ok(error instanceof StaleFenceError);
      assert.equal(error.highest, 7);
      return true;
    });
    await assert.rejects(item.write(6, 'stale'), StaleFenceError);
    await assert.rejects(item.write(5, 'stale'), StaleFenceError);
    assert.equal(await item.read(7), 'a');
    await item.write(7, 'b');
    assert.equal(await item.read(8), 'b');
  });

  it('records the fence of a read before anything was written', async () => {
    const item = fencedMemcachedItem(disref, 'stock:3');
    assert.equal(await item.read(3), undefined);
    assert.equal(await readRaw('stock:3'), 'fenced1 3');
    await assert.rejects(item.write(2, 'late'), StaleFenceError);
    await item.write(3, ''); // an empty value is a value
    assert.equal(await item.read(3), '');
  });

  it('hashes keys memcached cannot hold and keeps values with any characters', async () => {
    const key = `résumé with spaces ${'x'.repeat(300)}`;
    const item = fencedMemcachedItem(disref, key);
    const value = 'line one\r\nline two\nfenced1 99\n€';
    await item.write(1, value);
    assert.equal(await item.read(1), value);
    assert.match(fencedItemName(key), /^~fenced#[A-Za-z0-9_-]{43}$/);
    assert.equal(await readRaw(fencedItemName(key)), `fenced1 1\n${value}`);
  });

  it('fails with a BackendError naming the item when it holds something else, and leaves it alone', async () => {
    for (const garbage of ['42', 'fenced1 abc\nx', 'fenced1 -3', 'fenced1 99999999999999999', '']) {
      await writeRaw('foreign', garbage);
      const item = fencedMemcachedItem(disref, 'foreign');
      for (const attempt of [() => item.read(1), () => item.write(1_000, 'mine')]) {
        await assert.rejects(attempt(), (error: unknown) => {
          assert.ok(error instanceof BackendError, String(error));
          assert.equal(error.key, 'foreign');
          assert.equal(error.address, server.address);
          assert.match(error.message, /item foreign is not a fenced value written by disref/);
          return true;
        });
      }
      assert.equal(await readRaw('foreign'), garbage);
    }
    await writeRaw('binary', Buffer.from([0xff, 0x00, 0xfe]));
    await assert.rejects(fencedMemcachedItem(disref, 'binary').read(1), BackendError);
  });

  it('rejects bad arguments before reaching the store', async () => {
    const item = fencedMemcachedItem(disref, 'stock:4');
    for (const fence of [0, -1, 1.5, NaN, Number.MAX_SAFE_INTEGER + 2, '5']) {
      await assert.rejects(item.write(fence as number, 'x'), InvalidArgumentError);
      await assert.rejects(item.read(fence as number), InvalidArgumentError);
    }
    await assert.rejects(item.write(1, 42 as unknown as string), InvalidArgumentError);
    assert.throws(() => fencedMemcachedItem(disref, ''), InvalidArgumentError);
    assert.throws(() => fencedMemcachedItem(disref, 'a\nb'), InvalidArgumentError);
    assert.equal(await readRaw('stock:4'), undefined);
    const memory = await connect('memory://fenced-memcached-test');
    try {
      assert.throws(
        () => fencedMemcachedItem(memory, 'stock:4'),
        (error: unknown) =>
          error instanceof InvalidArgumentError && /connected to memcached/.test(error.message),
      );
    } finally {
      await memory.close();
    }
  });

  it('keeps every read-modify-write and never lets a lower fence write after a higher one (24 concurrent holders)', async () => {
    const item = fencedMemcachedItem(disref, 'log:in-process');
    const workers = 24;
    const results = await Promise.all(
      Array.from({ length: workers }, (_, worker) =>
        appendWithFences(item, { worker, workers, iterations: 20 }),
      ),
    );
    checkAppendLog(await item.read(Number.MAX_SAFE_INTEGER), results);
  });

  it('does the same across 4 OS processes', async () => {
    const workers = 4;
    const outputs = await runReadyWorkers(worker, workers, {
      DISREF_TEST_SERVERS: server.hostPort,
      DISREF_TEST_KEY: 'log:processes',
      DISREF_TEST_WORKERS: String(workers),
      DISREF_TEST_ITERATIONS: '60',
    });
    const results = outputs.map(parseAppendResult);
    const item = fencedMemcachedItem(disref, 'log:processes');
    checkAppendLog(await item.read(Number.MAX_SAFE_INTEGER), results);
  });

  it('stops a paused holder from writing late: its lease ran out and a newer holder took over', async () => {
    const item = fencedMemcachedItem(disref, 'counter');
    await item.write(1, '0');
    const old = await disref.lock('counter', { ttl: 200 }).acquire();
    const seen = Number(await item.read(old.fence));
    await sleep(300); // the holder "pauses" past its lease
    await disref.lock('counter').using(async (lease) => {
      const value = Number(await item.read(lease.fence));
      await item.write(lease.fence, String(value + 1));
    });
    await assert.rejects(item.write(old.fence, String(seen + 1)), StaleFenceError);
    assert.equal(await item.read(Number.MAX_SAFE_INTEGER), '1', 'only the newer holder wrote');
  });
});
