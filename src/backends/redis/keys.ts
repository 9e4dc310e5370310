/**
 * Redis key names. Every key of one lock shares a hash tag, so a lock lives
 * in one Cluster hash slot and one script can touch all of its keys.
 *
 * - lock `key` in namespace `ns`: `ns:{k:key}:lock`, `:queue`, `:fence`, and
 *   the wake-up channel `ns:{k:key}:released`;
 * - a key longer than {@link MAX_TAGGED_KEY_BYTES} bytes, or holding `}`
 *   (which would end the hash tag early), is tagged by its SHA-256 instead:
 *   `ns:{h:<hex>}:lock`. The `k:` / `h:` prefixes keep the two forms apart;
 * - namespace-wide keys put the namespace in the tag: `{ns}:marker`,
 *   `{ns}:process:<id>`. Namespaces hold no braces, so no lock key (which
 *   starts with the namespace) can equal one of these.
 * @module
 */
import { createHash } from 'node:crypto';

/** Longest key used verbatim in key names; longer keys are hashed. */
export const MAX_TAGGED_KEY_BYTES = 256;

/** The Redis keys (and channel) of one lock. */
export interface LockKeys {
  /** Hash of holders and waiters. */
  readonly lock: string;
  /** Sorted set of fair waiters in arrival order. */
  readonly queue: string;
  /** The last fence handed out; outlives the lock. */
  readonly fence: string;
  /** Pub/sub channel published to when the lock may have become free. */
  readonly channel: string;
}

export function lockKeys(namespace: string, key: string): LockKeys {
  const verbatim = Buffer.byteLength(key, 'utf8') <= MAX_TAGGED_KEY_BYTES && !key.includes('}');
  const tag = verbatim ? `k:${key}` : `h:${createHash('sha256').update(key).digest('hex')}`;
  const base = `${namespace}:{${tag}}`;
  return {
    lock: `${base}:lock`,
    queue: `${base}:queue`,
    fence: `${base}:fence`,
    channel: `${base}:released`,
  };
}

/** The namespace marker that reveals a store which lost its data. */
export function markerKey(namespace: string): string {
  return `{${namespace}}:marker`;
}

/** The heartbeat key of one process. */
export function processKey(namespace: string, processId: string): string {
  return `{${namespace}}:process:${processId}`;
}
