/**
 * One lock API over disref and its peers, so the benchmark runs the same
 * loop for each. Every implementation acquires with a 10 s lease and waits
 * without a time limit; peers poll every 50 ms (disref's own polling
 * interval, though on Redis it waits for a release notification instead).
 */
import { Redis } from 'ioredis';
import { Mutex as SemaphoreMutex } from 'redis-semaphore';
import Redlock from 'redlock';
import { connect, type Disref } from '../src/index.js';

export type Library = 'disref' | 'disref-unfair' | 'redlock' | 'redis-semaphore';
export const LIBRARIES: readonly Library[] = [
  'disref',
  'disref-unfair',
  'redlock',
  'redis-semaphore',
];

/** How a library shows in tables. */
export function label(library: Library): string {
  return library === 'disref'
    ? 'disref (redis)'
    : library === 'disref-unfair'
      ? 'disref (redis, fair: false)'
      : library;
}

export interface Locker {
  /** Acquires `key`, runs `work`, releases. */
  withLock(key: string, work: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

const TTL = 10_000;
const RETRY = 50;

export async function makeLocker(library: Library, url: string): Promise<Locker> {
  switch (library) {
    case 'disref':
    case 'disref-unfair': {
      const disref: Disref = await connect({
        url,
        namespace: 'bench',
        defaults: { fair: library === 'disref' },
      });
      return {
        withLock: async (key, work) => {
          const lease = await disref.lock(key, { ttl: TTL }).acquire();
          try {
            await work();
          } finally {
            await lease.release();
          }
        },
        close: () => disref.close(),
      };
    }
    case 'redlock': {
      const client = new Redis(url);
      const redlock = new Redlock([client], {
        retryCount: -1,
        retryDelay: RETRY,
        retryJitter: RETRY / 2,
      });
      return {
        withLock: async (key, work) => {
          const lock = await redlock.acquire([`redlock:${key}`], TTL);
          try {
            await work();
          } finally {
            await lock.release();
          }
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
            retryInterval: RETRY,
            refreshInterval: 0,
          });
          await mutex.acquire();
          try {
            await work();
          } finally {
            await mutex.release();
          }
        },
        close: async () => {
          client.disconnect();
          await Promise.resolve();
        },
      };
    }
  }
}
