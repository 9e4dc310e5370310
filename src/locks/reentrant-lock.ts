/**
 * `disref.rlock(key)`: a mutex that the same async call chain may take again.
 * Reentrancy stays in this process: the chain is tracked with
 * AsyncLocalStorage, entered by `using()` (and the `rlock` wrapper and
 * decorator). A nested `acquire()` / `using()` inside it nests and needs as
 * many releases; an unrelated concurrent call is a different owner and waits.
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { LockMode } from '../backend.js';
import type { AcquireOptions } from '../options.js';
import { Lease, type HeldLock } from './lease.js';
import { BaseLock, type Holding } from './lock.js';

interface Entry {
  readonly held: HeldLock;
  depth: number;
}

/** Per call chain: the reentrant locks it holds, by session and key. */
const chain = new AsyncLocalStorage<ReadonlyMap<string, Entry>>();

export class ReentrantLock extends BaseLock {
  protected readonly mode: LockMode = 'exclusive';
  /** Nesting depth of each lease this lock granted, by what the store granted. */
  readonly #entries = new WeakMap<HeldLock, Entry>();

  protected override async hold(
    options: AcquireOptions | undefined,
    throwOnTimeout: boolean,
  ): Promise<Holding | null> {
    const outer = chain.getStore()?.get(this.chainKey());
    if (outer !== undefined && !outer.held.isReleased && outer.held.lostError === undefined) {
      outer.depth += 1;
      return { lease: countedLease(outer), held: outer.held, fresh: false };
    }
    const holding = await super.hold(options, throwOnTimeout);
    if (holding === null) return null;
    const entry: Entry = { held: holding.held, depth: 1 };
    this.#entries.set(holding.held, entry);
    return { lease: countedLease(entry), held: holding.held, fresh: true };
  }

  protected override enter<T>(holding: Holding, fn: () => Promise<T> | T): Promise<T> | T {
    const entry = this.#entries.get(holding.held);
    if (!holding.fresh || entry === undefined) return fn();
    const inner = new Map(chain.getStore());
    inner.set(this.chainKey(), entry);
    return chain.run(inner, fn);
  }

  private chainKey(): string {
    return `${this.session.id}\0${this.key}`;
  }
}

/** A lease whose release only frees the lock when the outermost one releases. */
function countedLease(entry: Entry): Lease {
  return new Lease(entry.held, () => {
    entry.depth -= 1;
    return entry.depth === 0 ? entry.held.release() : Promise.resolve(true);
  });
}
