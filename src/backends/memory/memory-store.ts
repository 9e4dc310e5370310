/**
 * The in-memory store: one per name, shared by every `Disref` of this Node
 * process that connects to `memory://` (or `memory://NAME`). Operations are
 * synchronous, so each one is atomic with respect to every other caller.
 * @module
 */
import { performance } from 'node:perf_hooks';
import type {
  HandOff,
  AcquireRequest,
  AcquireResult,
  LockMode,
  LockState,
  ReleaseListener,
} from '../../backend.js';
import { ReferenceSpace } from './memory-references.js';

interface Holder {
  readonly mode: LockMode;
  readonly fence: number;
  expiresAt: number;
}

interface Waiter {
  readonly owner: string;
  readonly mode: LockMode;
  /** The lease length a hand-off grants. */
  readonly ttl: number;
  expiresAt: number;
}

interface LockRecord {
  readonly holders: Map<string, Holder>;
  /** FIFO queue of fair waiters. */
  readonly queue: Waiter[];
  /** Unfair exclusive waiters: while any is registered, new shared holders wait. */
  readonly pendingWriters: Map<string, number>;
}

/** Fences per ms of wall clock before a fence runs ahead of the clock. */
const FENCES_PER_MS = 1000;

export class MemoryStore {
  readonly name: string;
  private readonly locks = new Map<string, LockRecord>();
  /** Last fence per key; kept after release while it is ahead of the clock-derived floor. */
  private readonly fences = new Map<string, number>();
  private readonly listeners = new Map<string, Set<ReleaseListener>>();
  private readonly referenceSpaces = new Map<string, ReferenceSpace>();
  /** No grants before this monotonic time (after a simulated data loss). */
  private quarantineUntil = 0;

  constructor(name: string) {
    this.name = name;
  }

  acquire(request: AcquireRequest): AcquireResult {
    const now = performance.now();
    if (now < this.quarantineUntil) {
      return {
        granted: false,
        retryAfter: Math.ceil(this.quarantineUntil - now),
        quarantined: true,
      };
    }
    const record = this.record(request.key, now);
    const { owner, mode } = request;
    const existing = record.holders.get(owner);
    if (existing !== undefined) {
      // The same acquisition asked twice (a retried call): keep one lease.
      existing.expiresAt = now + request.ttl;
      return { granted: true, fence: existing.fence };
    }
    if (this.grantable(record, request)) {
      this.removeWaiter(record, owner);
      const fence = this.nextFence(request.key);
      record.holders.set(owner, { mode, fence, expiresAt: now + request.ttl });
      return { granted: true, fence };
    }
    if (request.wait) this.registerWaiter(record, request, now);
    let latest = 0;
    for (const holder of record.holders.values()) latest = Math.max(latest, holder.expiresAt);
    return { granted: false, retryAfter: Math.max(1, Math.ceil(latest - now)) };
  }

  extend(key: string, owner: string, ttl: number): boolean {
    const now = performance.now();
    const record = this.record(key, now);
    const holder = record.holders.get(owner);
    if (holder === undefined) return false;
    holder.expiresAt = now + ttl;
    return true;
  }

  release(key: string, owner: string): boolean {
    const record = this.locks.get(key);
    if (record === undefined) return false;
    const now = performance.now();
    const holder = record.holders.get(owner);
    const released = holder !== undefined && holder.expiresAt > now;
    record.holders.delete(owner);
    const handOffs = this.handOff(key, record, now);
    this.cleanup(key, record, now);
    if (released || handOffs.length > 0) this.notify(key, handOffs);
    return released;
  }

  leave(key: string, owner: string): void {
    const record = this.locks.get(key);
    if (record === undefined) return;
    const now = performance.now();
    // A hand-off may have granted the lock to this waiter as it gave up: give it back.
    const handedOff = record.holders.delete(owner);
    const wasWaiting = this.removeWaiter(record, owner) || handedOff;
    const handOffs = this.handOff(key, record, now);
    this.cleanup(key, record, now);
    if (wasWaiting) this.notify(key, handOffs);
  }

  onRelease(key: string, listener: ReleaseListener): () => void {
    let set = this.listeners.get(key);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    return () => {
      const current = this.listeners.get(key);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.listeners.delete(key);
    };
  }

  inspect(key: string): LockState | null {
    const now = performance.now();
    const record = this.locks.get(key);
    if (record === undefined) return null;
    this.expire(key, record, now);
    if (record.holders.size === 0 && record.queue.length === 0) return null;
    return {
      key,
      holders: [...record.holders].map(([owner, holder]) => ({
        owner,
        mode: holder.mode,
        fence: holder.fence,
        ttlLeft: Math.max(0, Math.round(holder.expiresAt - now)),
      })),
      waiters: record.queue.length + record.pendingWriters.size,
    };
  }

  /** Every lock whose store key starts with `prefix`, keyed by the rest of its key. */
  /** The locks stored under `namespace` (a store key prefix) whose key starts with `keyPrefix`. */
  locksUnder(namespace: string, keyPrefix = ''): LockState[] {
    const states: LockState[] = [];
    for (const key of [...this.locks.keys()]) {
      if (!key.startsWith(namespace + keyPrefix)) continue;
      const state = this.inspect(key);
      if (state !== null) states.push({ ...state, key: key.slice(namespace.length) });
    }
    return states;
  }

  /** The reference counting state of `namespace`. */
  references(namespace: string): ReferenceSpace {
    let space = this.referenceSpaces.get(namespace);
    if (space === undefined) {
      space = new ReferenceSpace();
      this.referenceSpaces.set(namespace, space);
    }
    return space;
  }

  /**
   * Drops every lock, as a store restarted without persistence would. Like
   * the other backends, the store then refuses grants until every lease that
   * was live could have run out (here it knows exactly which were), so a
   * holder that did not notice and a new holder never overlap. Fences stay
   * monotonic (they derive from the clock).
   */
  /** ms until the simulated data-loss quarantine ends, or undefined when there is none. */
  quarantineLeft(): number | undefined {
    const left = Math.ceil(this.quarantineUntil - performance.now());
    return left > 0 ? left : undefined;
  }

  loseAllData(): void {
    const keys = [...this.locks.keys()];
    for (const record of this.locks.values()) {
      for (const holder of record.holders.values()) {
        this.quarantineUntil = Math.max(this.quarantineUntil, holder.expiresAt);
      }
    }
    this.locks.clear();
    this.fences.clear();
    this.referenceSpaces.clear();
    for (const key of keys) this.notify(key);
  }

  private record(key: string, now: number): LockRecord {
    let record = this.locks.get(key);
    if (record === undefined) {
      record = { holders: new Map(), queue: [], pendingWriters: new Map() };
      this.locks.set(key, record);
    } else {
      this.expire(key, record, now);
    }
    return record;
  }

  /** Drops expired holders and waiters; wakes waiters when a holder ran out. */
  private expire(key: string, record: LockRecord, now: number): void {
    let holderExpired = false;
    for (const [owner, holder] of record.holders) {
      if (holder.expiresAt <= now) {
        record.holders.delete(owner);
        holderExpired = true;
      }
    }
    const before = record.queue.length;
    for (let i = record.queue.length - 1; i >= 0; i--) {
      const waiter = record.queue[i];
      if (waiter !== undefined && waiter.expiresAt <= now) record.queue.splice(i, 1);
    }
    for (const [owner, expiresAt] of record.pendingWriters) {
      if (expiresAt <= now) record.pendingWriters.delete(owner);
    }
    if (holderExpired || record.queue.length !== before) {
      this.notifySoon(key, this.handOff(key, record, now));
    }
  }

  /**
   * Grants the lock to the waiters at the head of the queue that can have it
   * now (one writer, or a run of readers), so a release needs no further
   * round trip from the next holder.
   */
  private handOff(key: string, record: LockRecord, now: number): HandOff[] {
    const handOffs: HandOff[] = [];
    if (now < this.quarantineUntil) return handOffs;
    for (;;) {
      const head = record.queue[0];
      if (head === undefined || head.expiresAt <= now) return handOffs;
      for (const holder of record.holders.values()) {
        if (head.mode === 'exclusive' || holder.mode === 'exclusive') return handOffs;
      }
      if (head.mode === 'shared' && record.pendingWriters.size > 0) return handOffs;
      record.queue.shift();
      const fence = this.nextFence(key);
      record.holders.set(head.owner, { mode: head.mode, fence, expiresAt: now + head.ttl });
      handOffs.push({ owner: head.owner, fence });
    }
  }

  private grantable(record: LockRecord, request: AcquireRequest): boolean {
    const { owner, mode } = request;
    for (const holder of record.holders.values()) {
      if (mode === 'exclusive' || holder.mode === 'exclusive') return false;
    }
    if (request.fair) {
      // Grant only if nobody ahead in the queue would conflict with us.
      for (const waiter of record.queue) {
        if (waiter.owner === owner) break;
        if (mode === 'exclusive' || waiter.mode === 'exclusive') return false;
      }
    }
    if (mode === 'shared') {
      for (const writer of record.pendingWriters.keys()) if (writer !== owner) return false;
    }
    return true;
  }

  private registerWaiter(record: LockRecord, request: AcquireRequest, now: number): void {
    const expiresAt = now + request.waiterTtl;
    if (request.fair) {
      const queued = record.queue.find((waiter) => waiter.owner === request.owner);
      if (queued === undefined) {
        record.queue.push({
          owner: request.owner,
          mode: request.mode,
          ttl: request.ttl,
          expiresAt,
        });
      } else {
        queued.expiresAt = expiresAt;
      }
    } else if (request.mode === 'exclusive') {
      record.pendingWriters.set(request.owner, expiresAt);
    }
  }

  private removeWaiter(record: LockRecord, owner: string): boolean {
    const index = record.queue.findIndex((waiter) => waiter.owner === owner);
    if (index >= 0) record.queue.splice(index, 1);
    return record.pendingWriters.delete(owner) || index >= 0;
  }

  private nextFence(key: string): number {
    const floor = Date.now() * FENCES_PER_MS;
    const fence = Math.max(floor, (this.fences.get(key) ?? 0) + 1);
    this.fences.set(key, fence);
    return fence;
  }

  private cleanup(key: string, record: LockRecord, now: number): void {
    this.expire(key, record, now);
    if (record.holders.size > 0 || record.queue.length > 0 || record.pendingWriters.size > 0) {
      return;
    }
    this.locks.delete(key);
    // The fence only needs keeping while it is ahead of the clock-derived floor.
    const fence = this.fences.get(key);
    if (fence !== undefined && fence < Date.now() * FENCES_PER_MS) this.fences.delete(key);
  }

  private notify(key: string, handOffs: readonly HandOff[] = []): void {
    const set = this.listeners.get(key);
    if (set === undefined) return;
    for (const listener of [...set]) {
      listener();
      for (const handOff of handOffs) listener(handOff);
    }
  }

  /** Wakes waiters after the current synchronous operation has finished. */
  private notifySoon(key: string, handOffs: readonly HandOff[]): void {
    if (this.listeners.has(key)) {
      queueMicrotask(() => {
        this.notify(key, handOffs);
      });
    }
  }
}

const stores = new Map<string, MemoryStore>();

/** The store named `name` in this process (`''` is the default store). */
export function memoryStore(name: string): MemoryStore {
  let store = stores.get(name);
  if (store === undefined) {
    store = new MemoryStore(name);
    stores.set(name, store);
  }
  return store;
}
