/** Fenced resources: a Redis key guarded by fences, against a real redis-server. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import {
  connect,
  fencedRedisKey,
  InvalidArgumentError,
  StaleFenceError,
  type Disref,
} from '../src/index.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

describe(
  'fencedRedisKey',
  { skip: !requireServers && unavailable !== undefined ? unavailable : false },
  () => {
    let server: RedisServer;
    let client: Redis;
    before(async () => {
      if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
      server = await RedisServer.start();
      client = new Redis(server.port, '127.0.0.1');
    });
    after(async () => {
      client.disconnect();
      await server.dispose();
    });

    it('refuses a write with a fence older than one already written, and writes nothing', async () => {
      const resource = fencedRedisKey(client, 'balance:1');
      assert.equal(await resource.read(10), undefined);
      await resource.write(10, '100');
      await resource.write(10, '110'); // the same holder may write again
      await assert.rejects(resource.write(9, '0'), (error: unknown) => {
        assert.ok(error instanceof StaleFenceError);
        assert.equal(error.key, 'balance:1');
        assert.equal(error.fence, 9);
        assert.equal(error.highest, 10);
        assert.equal(error.code, 'ERR_DISREF_STALE_FENCE');
        return true;
      });
      assert.equal(await resource.read(10), '110');
    });

    it('checks reads: once a newer holder has read, an older one can neither read nor write', async () => {
      const resource = fencedRedisKey(client, 'balance:2');
      await resource.write(5, 'a');
      assert.equal(await resource.read(7), 'a'); // the newer holder only read
      await assert.rejects(resource.read(6), StaleFenceError);
      await assert.rejects(resource.write(6, 'stale'), StaleFenceError);
      await resource.write(7, 'b');
      assert.equal(await resource.read(7), 'b');
    });

    it('rejects bad fences and values before reaching the store', async () => {
      const resource = fencedRedisKey(client, 'balance:3');
      for (const fence of [0, -1, 1.5, NaN, Number.MAX_SAFE_INTEGER + 2, '5']) {
        await assert.rejects(resource.write(fence as number, 'x'), InvalidArgumentError);
      }
      await assert.rejects(resource.write(1, 42 as unknown as string), InvalidArgumentError);
      assert.throws(() => fencedRedisKey(client, ''), InvalidArgumentError);
      assert.equal(await client.exists('balance:3'), 0);
    });

    it('stops a paused holder from writing late: its lease ran out and a newer holder took over', async () => {
      const admin = new Redis(server.port, '127.0.0.1');
      await markNamespaceFresh(admin, 'fenced');
      admin.disconnect();
      const [slow, fast]: Disref[] = await Promise.all([
        connect({ url: server.url, namespace: 'fenced' }),
        connect({ url: server.url, namespace: 'fenced' }),
      ]);
      assert.ok(slow !== undefined && fast !== undefined);
      try {
        const counter = fencedRedisKey(client, 'counter');
        await counter.write(1, '0');
        const old = await slow.lock('counter', { ttl: 200 }).acquire();
        const seen = Number(await counter.read(old.fence));
        await sleep(300); // the holder "pauses" past its lease
        await fast.lock('counter').using(async (lease) => {
          const value = Number(await counter.read(lease.fence));
          await counter.write(lease.fence, String(value + 1));
        });
        assert.throws(() => {
          old.check();
        }, /lost/);
        await assert.rejects(counter.write(old.fence, String(seen + 1)), StaleFenceError);
        assert.equal(
          await counter.read(Number.MAX_SAFE_INTEGER),
          '1',
          'only the newer holder wrote',
        );
      } finally {
        await Promise.all([slow.close(), fast.close()]);
      }
    });
  },
);
