/**
 * Compare-and-swap on one memcached item: read it with its CAS value, decide
 * what it becomes, write it back only if nobody changed it meanwhile (or
 * create it with `add` where there was none), and start over otherwise, a
 * bounded number of times with random growing pauses. Lock records
 * (`memcached-backend.ts`) and every reference item (`memcached-references.ts`)
 * change this way, so no update is ever lost: a write computed from a stale
 * read fails and is recomputed.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemcachedClient, ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import type { MetaRequest, MetaResponse } from './protocol.js';

/** Compare-and-swap tries per operation before giving up on a contended item. */
export const MAX_CAS_ATTEMPTS = 16;
/** Longest pause between two compare-and-swap tries, in ms (the pause is random, growing). */
const MAX_CAS_PAUSE = 20;

/**
 * Before a retry, a random pause that grows with the attempt (capped at
 * {@link MAX_CAS_PAUSE} ms), so that writers who collided do not collide
 * again in lockstep.
 */
export function casPause(attempt: number): Promise<void> {
  if (attempt === 0) return Promise.resolve();
  return sleep(Math.random() * Math.min(MAX_CAS_PAUSE, 2 ** attempt));
}

/** What one compare-and-swap round decided: leave the item, replace it, or delete it. */
export type Decision<T> =
  | { readonly kind: 'keep'; readonly result: T }
  | { readonly kind: 'set'; readonly value: string; readonly result: T }
  | { readonly kind: 'delete'; readonly result: T };

/** Where the item is and how to write it. */
export interface CasTarget {
  readonly server: ServerPool;
  readonly key: string;
  /** memcached exptime of written values, in seconds (0: never expires). */
  readonly exptime: number;
  /** Names the item in the error when every attempt lost its race. */
  readonly what: string;
}

/**
 * Runs the compare-and-swap loop on `target`. `decide` sees the item (`VA`
 * with a value, or `EN`), the replies to `alsoRead` (read in the same
 * round trip from the same server, e.g. the liveness of the writer), and
 * the wall clock of this attempt; it may await other reads. It is called
 * again after a lost race, so it must not have side effects of its own.
 * Resolves the `result` of the decision that was applied.
 */
export async function compareAndSwap<T>(
  client: MemcachedClient,
  target: CasTarget,
  decide: (
    item: MetaResponse,
    also: readonly MetaResponse[],
    now: number,
  ) => Decision<T> | Promise<Decision<T>>,
  alsoRead: readonly MetaRequest[] = [],
): Promise<T> {
  const { server, key } = target;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    await casPause(attempt);
    const [item, ...also] = await client.meta(server, [
      { command: 'mg', key, flags: ['v', 'c'] },
      ...alsoRead,
    ] as const);
    const decision = await decide(item, also, Date.now());
    if (decision.kind === 'keep') return decision.result;
    const cas = item.status === 'VA' ? `C${item.flags.get('c') ?? '0'}` : undefined;
    let request: MetaRequest;
    if (decision.kind === 'delete') {
      if (cas === undefined) return decision.result; // nothing there to delete
      request = { command: 'md', key, flags: [cas] };
    } else {
      request = {
        command: 'ms',
        key,
        value: decision.value,
        flags: [`T${String(target.exptime)}`, cas ?? 'ME'],
      };
    }
    const [written] = await client.meta(server, [request]);
    // EX: changed since the read; NS: created since (add lost); NF: deleted since.
    if (written.status === 'HD') return decision.result;
  }
  throw new MemcachedServerError(
    server.address,
    `${target.what} still changing after ${String(MAX_CAS_ATTEMPTS)} compare-and-swap attempts; retry`,
  );
}
