/**
 * Where the time of one caller's acquire+release pair goes on Redis, against
 * the floor of target (1) (SET NX PX, then an EVALSHA compare-and-delete):
 *
 * - "two minimal scripts": the least a lock with a server-side fence can send,
 *   two scripts, the acquire reading the server clock and writing one hash
 *   field (TIME + HSET), the release deleting it (DEL);
 * - "disref's scripts, raw": acquire-4.lua and release-3.lua sent by a bare
 *   ioredis client, without any of disref's client code;
 * - "disref": the same through `disref.lock(key).acquire()` and `release()`.
 *
 * All share one redis-server and take turns in blocks of 100 pairs, 60 turns
 * in an order that rotates each turn (this machine's speed drifts over
 * seconds). Run: `npm run bench:one-caller`.
 */
import { Redis } from 'ioredis';
import { connect } from '../dist/index.js';
import { lockKeys, markerKey } from '../dist/backends/redis/keys.js';
import { luaScripts } from '../dist/backends/redis/scripts.js';
import { RedisServer } from '../test/harness/servers.js';
import { markNamespaceFresh } from '../test/harness/targets.js';
import { inTurns } from './turns.js';

const TURNS = 60;
const PAIRS = 100;
const NAMESPACE = 'bench';
const COMPARE_AND_DELETE =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const MINIMAL_ACQUIRE = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], 'exclusive ' .. string.format('%.0f', now * 1000))
return { 1, now * 1000 }`;
const MINIMAL_RELEASE = "return redis.call('DEL', KEYS[1])";

const server = await RedisServer.start();
const client = new Redis(server.port, '127.0.0.1');
try {
  await markNamespaceFresh(client, NAMESPACE);
  const load = async (source: string): Promise<string> =>
    String(await client.script('LOAD', source));
  const compareAndDelete = await load(COMPARE_AND_DELETE);
  const minimalAcquire = await load(MINIMAL_ACQUIRE);
  const minimalRelease = await load(MINIMAL_RELEASE);
  const scripts = luaScripts();
  const acquire = await load(scripts.acquire.source);
  const release = await load(scripts.release.source);
  const epoch = (await client.hget(markerKey(NAMESPACE), 'epoch')) ?? '';
  const disref = await connect({ url: server.url, namespace: NAMESPACE });

  let next = 0;
  const contenders: [string, () => Promise<void>][] = [
    [
      'floor: SET NX PX + EVALSHA del',
      async () => {
        const key = `floor:${String(next++ % 64)}`;
        await client.set(key, 'token', 'PX', 10_000, 'NX');
        await client.evalsha(compareAndDelete, 1, key, 'token');
      },
    ],
    [
      'two minimal scripts (TIME + HSET, DEL)',
      async () => {
        const key = `minimal:${String(next++ % 64)}`;
        await client.evalsha(minimalAcquire, 1, key, `owner:${String(next)}`);
        await client.evalsha(minimalRelease, 1, key);
      },
    ],
    [
      "disref's scripts, raw",
      async () => {
        const keys = lockKeys(NAMESPACE, `raw:${String(next++ % 64)}`);
        const owner = `session:${String(next)}`;
        await client.evalsha(
          acquire,
          4,
          keys.lock,
          keys.queue,
          keys.fence,
          markerKey(NAMESPACE),
          ...[owner, 'exclusive', '10000', '1', '1', '4000', epoch, '60000', '3600000'],
          ...[keys.channel, '', ''],
        );
        await client.evalsha(
          release,
          3,
          keys.lock,
          keys.queue,
          keys.fence,
          owner,
          keys.channel,
          '3600000',
        );
      },
    ],
    [
      'disref',
      async () => {
        const lease = await disref.lock(`api:${String(next++ % 64)}`, { ttl: 10_000 }).acquire();
        await lease.release();
      },
    ],
  ];

  for (const [, pair] of contenders) for (let i = 0; i < 300; i++) await pair();
  const spent = contenders.map(() => 0);
  await inTurns(contenders.length, TURNS, async (index) => {
    const pair = contenders[index]?.[1];
    if (pair === undefined) return;
    const started = performance.now();
    for (let n = 0; n < PAIRS; n++) await pair();
    spent[index] = (spent[index] ?? 0) + performance.now() - started;
  });
  const floor = spent[0] ?? NaN;
  console.log('contender                                µs/pair  × the floor');
  contenders.forEach(([name], i) => {
    const ms = spent[i] ?? NaN;
    console.log(
      `${name.padEnd(40)} ${((ms / (TURNS * PAIRS)) * 1000).toFixed(0).padStart(7)}  ${(floor / ms).toFixed(2)}`,
    );
  });
  await disref.close();
} finally {
  client.disconnect();
  await server.stop();
}
