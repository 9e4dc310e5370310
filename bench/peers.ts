/**
 * One lock API over disref, its peers and a hand-rolled floor, so the
 * benchmark runs the same loops for each. Every implementation uses a 10 s
 * lease and waits without a time limit. Peers poll; their retry interval is
 * a parameter so the benchmark can tune each for its best result.
 */
import { Redis } from 'ioredis';
import { Mutex as SemaphoreMutex } from 'redis-semaphore';
import Redlock from 'redlock';
import { randomUUID } from 'node:crypto';
import { connect, type Disref } from '../dist/index.js';

export type Library =
  | 'disref'
  | 'disref-unfair'
  | 'floor'
  | 'hand-off-floor'
  | 'redlock'
  | 'redis-semaphore'
  | 'disref-memcached';

/** How a library shows in tables. */
export function label(library: Library, retry?: number): string {
  switch (library) {
    case 'disref':
      return 'disref (redis)';
    case 'disref-unfair':
      return 'disref (redis, fair: false)';
    case 'disref-memcached':
      return 'disref (memcached)';
    case 'floor':
      return 'floor: SET NX PX + EVALSHA del';
    case 'hand-off-floor':
      return 'floor: fair hand-off (queue + PUBLISH)';
    default:
      return retry === undefined ? library : `${library} (retry ${String(retry)} ms)`;
  }
}

export interface Locker {
  /** Acquires `key`, runs `work`, releases; resolves the ms spent waiting for the lock. */
  withLock(key: string, work: () => Promise<void>): Promise<number>;
  close(): Promise<void>;
}

const TTL = 10_000;

// The least a fair lock with a store-side hand-off can do (no fence, lease
// renewal, crash recovery or quarantine): take the lock if free, else join a
// queue; the release gives it to the head of the queue and PUBLISHes the grant
// to that waiter's connection. One script per acquire, one per release, one
// message per grant: the critical path of every hand-off disref makes.
const HAND_OFF_ACQUIRE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 0`;
const HAND_OFF_RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local next = redis.call('LPOP', KEYS[2])
if not next then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], next, 'PX', ARGV[2])
redis.call('PUBLISH', 'hand-off-floor:' .. string.match(next, '^[^:]+'), next)
return 1`;

const COMPARE_AND_DELETE =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

async function timed(acquire: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await acquire();
  return performance.now() - started;
}

/** A locker with its own connection(s). `retry` is the peers' polling interval in ms. */
export async function makeLocker(library: Library, url: string, retry = 50): Promise<Locker> {
  switch (library) {
    case 'disref':
    case 'disref-unfair':
    case 'disref-memcached': {
      const disref: Disref = await connect({
        url,
        namespace: 'bench',
        defaults: { fair: library === 'disref', retryInterval: retry },
      });
      return {
        withLock: async (key, work) => {
          const started = performance.now();
          const lease = await disref.lock(key, { ttl: TTL }).acquire();
          const waited = performance.now() - started;
          try {
            await work();
          } finally {
            await lease.release();
          }
          return waited;
        },
        close: () => disref.close(),
      };
    }
    case 'floor': {
      // The least a correct Redis lock can do: one SET NX PX, one compare-and-delete.
      const client = new Redis(url);
      client.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE });
      const release = client as unknown as {
        compareAndDelete(key: string, token: string): Promise<number>;
      };
      return {
        withLock: async (key, work) => {
          const token = randomUUID();
          const waited = await timed(async () => {
            while ((await client.set(`floor:${key}`, token, 'PX', TTL, 'NX')) === null) {
              await new Promise((resolve) => setTimeout(resolve, retry));
            }
          });
          try {
            await work();
          } finally {
            await release.compareAndDelete(`floor:${key}`, token);
          }
          return waited;
        },
        close: async () => {
          client.disconnect();
          await Promise.resolve();
        },
      };
    }
    case 'hand-off-floor': {
      const client = new Redis(url);
      const subscriber = new Redis(url);
      client.defineCommand('handOffAcquire', { numberOfKeys: 2, lua: HAND_OFF_ACQUIRE });
      client.defineCommand('handOffRelease', { numberOfKeys: 2, lua: HAND_OFF_RELEASE });
      const scripts = client as unknown as {
        handOffAcquire(lock: string, queue: string, token: string, ttl: number): Promise<number>;
        handOffRelease(lock: string, queue: string, token: string, ttl: number): Promise<number>;
      };
      // Tokens are '<locker>:<n>': the release script publishes to the locker's channel.
      const locker = randomUUID();
      let issued = 0;
      const granted = new Map<string, () => void>();
      subscriber.on('message', (_channel: string, token: string) => {
        granted.get(token)?.();
      });
      await subscriber.subscribe(`hand-off-floor:${locker}`);
      return {
        withLock: async (key, work) => {
          const token = `${locker}:${String((issued += 1))}`;
          const lock = `hand-off-floor:{${key}}`;
          const queue = `hand-off-floor:{${key}}:queue`;
          const waited = await timed(async () => {
            // Listening before asking: the grant may arrive before the reply to the ask.
            const grant = new Promise<void>((resolve) => granted.set(token, resolve));
            if ((await scripts.handOffAcquire(lock, queue, token, TTL)) === 0) await grant;
            granted.delete(token);
          });
          try {
            await work();
          } finally {
            await scripts.handOffRelease(lock, queue, token, TTL);
          }
          return waited;
        },
        close: async () => {
          client.disconnect();
          subscriber.disconnect();
          await Promise.resolve();
        },
      };
    }
    case 'redlock': {
      const client = new Redis(url);
      const redlock = new Redlock([client], {
        retryCount: -1,
        retryDelay: retry,
        retryJitter: Math.ceil(retry / 2),
      });
      return {
        withLock: async (key, work) => {
          let lock: Awaited<ReturnType<Redlock['acquire']>> | undefined;
          const waited = await timed(async () => {
            lock = await redlock.acquire([`redlock:${key}`], TTL);
          });
          try {
            await work();
          } finally {
            await lock?.release();
          }
          return waited;
        },
        close: async () => {
          await redlock.quit();
        },
      };
    }
    case 'redis-semaphore': {
      const client = new Redis(url);
      return {
        withLock: async (key, work) => {
          const mutex = new SemaphoreMutex(client, `semaphore:${key}`, {
            lockTimeout: TTL,
            acquireTimeout: 600_000,
            retryInterval: retry,
            refreshInterval: 0,
          });
          const waited = await timed(() => mutex.acquire());
          try {
            await work();
          } finally {
            await mutex.release();
          }
          return waited;
        },
        close: async () => {
          client.disconnect();
          await Promise.resolve();
        },
      };
    }
  }
}
