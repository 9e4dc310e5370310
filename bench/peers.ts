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
  'disref' | 'disref-unfair' | 'floor' | 'redlock' | 'redis-semaphore' | 'disref-memcached';

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
