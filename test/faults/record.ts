/**
 * The shared record of the fault runs: a counter in a store that no fault
 * touches, of the same kind as the lock store — a fenced Redis key, or a
 * fenced memcached item (through a `Disref` of its own).
 */
import { Redis } from 'ioredis';
import {
  connect,
  fencedMemcachedItem,
  fencedRedisKey,
  type FencedResource,
} from '../../src/index.js';

export interface OpenRecord {
  readonly record: FencedResource;
  readonly close: () => Promise<void>;
}

/** Opens the record `key` on the store at `url` (`redis://` or `memcached://`). */
export async function openRecord(url: string, key: string): Promise<OpenRecord> {
  if (url.startsWith('memcached://')) {
    const disref = await connect({ url, namespace: 'fault-records', onError: () => undefined });
    return { record: fencedMemcachedItem(disref, key), close: () => disref.close() };
  }
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  return {
    record: fencedRedisKey(redis, key),
    close: () => {
      redis.disconnect();
      return Promise.resolve();
    },
  };
}

/** The record's value once the run is over (presenting the highest possible fence). */
export async function finalValue(url: string, key: string): Promise<number> {
  const { record, close } = await openRecord(url, key);
  try {
    return Number((await record.read(Number.MAX_SAFE_INTEGER)) ?? 0);
  } finally {
    await close();
  }
}
