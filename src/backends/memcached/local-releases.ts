/**
 * Release wake-ups inside one Node process. memcached cannot notify, so
 * waiters in other processes poll; but a waiter in this process is woken at
 * once when a lock it waits for is released (or a waiter leaves) through
 * any memcached backend of this process, whichever `Disref` made it.
 * @module
 */
import type { ReleaseListener } from '../../backend.js';

const listeners = new Map<string, Set<ReleaseListener>>();

/** Calls `listener` when the lock item `item` on server `serverId` is released locally. */
export function listenLocally(
  serverId: string,
  item: string,
  listener: ReleaseListener,
): () => void {
  const slot = `${serverId} ${item}`;
  let set = listeners.get(slot);
  if (set === undefined) {
    set = new Set();
    listeners.set(slot, set);
  }
  set.add(listener);
  return () => {
    const current = listeners.get(slot);
    if (current === undefined) return;
    current.delete(listener);
    if (current.size === 0) listeners.delete(slot);
  };
}

/** Wakes this process's waiters on `item` (after the current operation has finished). */
export function releasedLocally(serverId: string, item: string): void {
  const set = listeners.get(`${serverId} ${item}`);
  if (set === undefined) return;
  const woken = [...set];
  queueMicrotask(() => {
    for (const listener of woken) listener();
  });
}
