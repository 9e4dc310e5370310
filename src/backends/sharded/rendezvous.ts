/**
 * Rendezvous (highest random weight) hashing: each shard scores a key with
 * a seeded hash, and the highest score wins. Adding a shard moves only the
 * keys it now wins (about 1/n); removing one moves only its own keys; every
 * process that lists the same shards, in any order, picks the same one.
 *
 * The score is MurmurHash3 (x86, 32-bit) of the key's UTF-8 bytes, seeded
 * per shard from a SHA-256 of its id: it runs on every lock operation, and
 * a native digest per shard per key costs several microseconds where this
 * costs a fraction of one. (The memcached pool's `Rendezvous` digests with
 * MD5 per shard; it routes far fewer operations per lock.)
 * @module
 */
import { createHash } from 'node:crypto';

export class Rendezvous<T> {
  private readonly entries: readonly {
    readonly item: T;
    readonly id: string;
    readonly seed: number;
  }[];
  private readonly encoder = new TextEncoder();

  /** `id` names an item the same way in every process (e.g. `host:port`). */
  constructor(items: readonly T[], id: (item: T) => string) {
    if (items.length === 0) throw new RangeError('rendezvous hashing needs at least one item');
    this.entries = items.map((item) => ({
      item,
      id: id(item),
      seed: createHash('sha256').update(id(item), 'utf8').digest().readUInt32BE(0),
    }));
  }

  /** The item that owns `key`. */
  pick(key: string): T {
    const bytes = this.encoder.encode(key);
    let best = this.entries[0];
    let bestScore = -1;
    for (const entry of this.entries) {
      const score = murmur3(bytes, entry.seed);
      // Ties (1 in 2^32) go to the smaller id, so the order of the list never matters.
      if (score > bestScore || (score === bestScore && best !== undefined && entry.id < best.id)) {
        best = entry;
        bestScore = score;
      }
    }
    // The constructor refused an empty list.
    return (best as { item: T }).item;
  }
}

/** MurmurHash3_x86_32 of `bytes` with `seed`, as an unsigned 32-bit integer. */
export function murmur3(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const length = bytes.length;
  const tail = length & ~3;
  let h = seed >>> 0;
  for (let i = 0; i < tail; i += 4) {
    let k =
      (bytes[i] ?? 0) |
      ((bytes[i + 1] ?? 0) << 8) |
      ((bytes[i + 2] ?? 0) << 16) |
      ((bytes[i + 3] ?? 0) << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = length & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= (bytes[tail + 2] ?? 0) << 16;
    if (rest >= 2) k ^= (bytes[tail + 1] ?? 0) << 8;
    k ^= bytes[tail] ?? 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
