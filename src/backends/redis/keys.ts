/**
 * Redis key names. Every key of one lock shares a hash tag, so a lock lives
 * in one Cluster hash slot and one script can touch all of its keys.
 *
 * - lock `key` in namespace `ns`: `ns:{k:key}:lock`, `:queue`, `:fence`, the
 *   wake-up channel `ns:{k:key}:released`, and per waiting process the
 *   channel its hand-offs go to, `ns:{k:key}:released:<session>`
 *   ({@link grantChannel});
 * - a key longer than {@link MAX_TAGGED_KEY_BYTES} bytes, or holding `}`
 *   (which would end the hash tag early), is tagged by its SHA-256 instead:
 *   `ns:{h:<hex>}:lock`. The `k:` / `h:` prefixes keep the two forms apart;
 * - a reference-counted resource: `ns:{r:resource}:ref`, or
 *   `ns:{rh:<hex>}:ref` for long names or names holding `}` (same rule);
 * - on Redis Cluster, one data-loss marker per hash slot a namespace uses,
 *   `ns:{m:TAG}:marker`, with TAG chosen so the key lands in that slot
 *   (slots.ts), so a lock's acquire script can read the marker of its slot;
 * - namespace-wide keys put the namespace in the tag, so they all share one
 *   Cluster slot and scripts may derive one from another (as BullMQ's do):
 *   `{ns}:marker`, the process registry `{ns}:processes`, per process
 *   `{ns}:process:<id>` and `{ns}:held:<id>`, and per resource kind
 *   `{ns}:pending:<kind>`. Namespaces hold no braces, so no lock or resource
 *   key (which starts with the namespace) can equal one of these.
 *
 * The scripts under `scripts/` build the namespace keys from
 * {@link namespacePrefix} the same way; keep the two in step.
 * @module
 */
import { createHash } from 'node:crypto';
import { slotTag } from './slots.js';

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
  /** The key is hashed in the names, so the lock hash keeps it (field `key`) for `status`. */
  readonly hashed: boolean;
}

/** A hash tag body for `name`: `<verbatim>name`, or `<hashed><sha256>` when it cannot be used as is. */
function tagFor(name: string, verbatim: string, hashed: string): string {
  const usable = Buffer.byteLength(name, 'utf8') <= MAX_TAGGED_KEY_BYTES && !name.includes('}');
  return usable
    ? `${verbatim}${name}`
    : `${hashed}${createHash('sha256').update(name).digest('hex')}`;
}

export function lockKeys(namespace: string, key: string): LockKeys {
  const tag = tagFor(key, 'k:', 'h:');
  const base = `${namespace}:{${tag}}`;
  return {
    lock: `${base}:lock`,
    queue: `${base}:queue`,
    fence: `${base}:fence`,
    channel: `${base}:released`,
    hashed: tag.startsWith('h:'),
  };
}

/**
 * The channel a store-side hand-off to `owner` is published on: the lock's
 * channel and the owner's session (owner tokens are `<session>:<random>`;
 * includes/hand-off.lua derives it the same way). Only the process that
 * waits receives it, however many others wait on the same lock.
 */
export function grantChannel(channel: string, owner: string): string {
  const colon = owner.lastIndexOf(':');
  return `${channel}:${colon < 0 ? owner : owner.slice(0, colon)}`;
}

/** The namespace marker that reveals a store which lost its data. */
export function markerKey(namespace: string): string {
  return `{${namespace}}:marker`;
}

/** Redis Cluster: the data-loss marker of hash slot `slot` (includes/slot-marker.lua). */
export function slotMarkerKey(namespace: string, slot: number): string {
  return `${namespace}:{${slotTag(slot)}}:marker`;
}

/** The hash of one reference-counted resource: holders, counters, completion claim. */
export function referenceKey(namespace: string, resource: string): string {
  return `${namespace}:{${tagFor(resource, 'r:', 'rh:')}}:ref`;
}

/** `{ns}:`, the start of every namespace-wide key (one hash tag, so one Cluster slot). */
export function namespacePrefix(namespace: string): string {
  return `{${namespace}}:`;
}

/** The process registry: a sorted set of process ids by the server ms their heartbeat runs out. */
export function processesKey(namespace: string): string {
  return `${namespacePrefix(namespace)}processes`;
}

/** What one process recorded about itself: a hash of `beat` (server ms), `host`, `pid`. */
export function processKey(namespace: string, processId: string): string {
  return `${namespacePrefix(namespace)}process:${processId}`;
}

/** The names of the resources one process holds a reference to (a set). */
export function heldKey(namespace: string, processId: string): string {
  return `${namespacePrefix(namespace)}held:${processId}`;
}

/**
 * Resources of one kind whose completion is due or running: a sorted set of
 * names by the server ms from which they may be claimed (0: now; a running
 * completion: when its claim lapses).
 */
export function pendingKey(namespace: string, kind: string): string {
  return `${namespacePrefix(namespace)}pending:${kind}`;
}
