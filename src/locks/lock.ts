/**
 * The `Lock` shape every lock kind returns, and the base class that gives
 * each kind `acquire`, `tryAcquire` and `using` over the shared acquisition
 * loop. A kind only chooses its mode and, for reentrancy, how a held lease is
 * entered.
 * @module
 */
import type { LockMode } from '../backend.js';
import {
  validateAcquireOptions,
  type AcquireOptions,
  type ResolvedLockOptions,
} from '../options.js';
import type { Session } from '../session.js';
import { assertFunction } from '../validate.js';
import { acquireHeld } from './acquire.js';
import { Lease, type HeldLock } from './lease.js';

/** A lock on one key. Every kind (mutex, reentrant, read, write) has this shape. */
export interface Lock {
  /** The key, as given. */
  readonly key: string;
  /**
   * Waits for the lock (up to `timeout`), then resolves the lease.
   * @throws LockTimeoutError when `timeout` ran out; the abort reason when a signal aborted.
   */
  acquire(options?: AcquireOptions): Promise<Lease>;
  /** Takes the lock if it is free now; resolves `null` otherwise. Never waits. */
  tryAcquire(options?: Pick<AcquireOptions, 'signal'>): Promise<Lease | null>;
  /**
   * Acquires, runs `fn` with the lease kept extended, and releases in
   * `finally`. If the lease is lost while `fn` runs, `lease.signal` aborts at
   * once and `using` rejects with `LockLostError` after `fn` settles.
   */
  using<T>(fn: (lease: Lease) => Promise<T> | T, options?: AcquireOptions): Promise<T>;
}

/** A lease together with what the store granted, for the lock's own use. */
export interface Holding {
  readonly lease: Lease;
  readonly held: HeldLock;
  /** False when a reentrant lock nested into a lease its caller already holds. */
  readonly fresh: boolean;
}

export abstract class BaseLock implements Lock {
  readonly key: string;
  protected readonly session: Session;
  protected readonly options: ResolvedLockOptions;
  protected abstract readonly mode: LockMode;

  constructor(session: Session, key: string, options: ResolvedLockOptions) {
    this.session = session;
    this.key = key;
    this.options = options;
  }

  async acquire(options?: AcquireOptions): Promise<Lease> {
    const holding = await this.hold(options, true);
    if (holding === null) throw new Error('unreachable: acquire without a lease');
    return holding.lease;
  }

  async tryAcquire(options?: Pick<AcquireOptions, 'signal'>): Promise<Lease | null> {
    const call = validateAcquireOptions(options, ['signal']);
    const holding = await this.hold({ ...call, timeout: 0 }, false);
    return holding?.lease ?? null;
  }

  async using<T>(fn: (lease: Lease) => Promise<T> | T, options?: AcquireOptions): Promise<T> {
    assertFunction(fn, 'fn');
    const holding = await this.hold(options, true);
    if (holding === null) throw new Error('unreachable: using without a lease');
    const { lease, held, fresh } = holding;
    const stopExtending = fresh ? held.keepExtended() : undefined;
    let result: T;
    try {
      result = await this.enter(holding, () => fn(lease));
      // Work that finished after the lease was lost was not protected: say so.
      if (!held.isReleased && held.lostError !== undefined) throw held.lostError;
    } catch (error) {
      stopExtending?.();
      await lease.release().catch(() => undefined);
      throw error;
    }
    stopExtending?.();
    await lease.release();
    return result;
  }

  /** Takes the lock; `null` only when `throwOnTimeout` is false and it was busy. */
  protected async hold(
    options: AcquireOptions | undefined,
    throwOnTimeout: boolean,
  ): Promise<Holding | null> {
    const call = validateAcquireOptions(options);
    const held = await acquireHeld(
      { session: this.session, key: this.key, mode: this.mode, options: this.options },
      { timeout: call.timeout ?? this.options.timeout, signal: call.signal, throwOnTimeout },
    );
    if (held === null) return null;
    return { lease: new Lease(held, () => held.release()), held, fresh: true };
  }

  /** Runs `fn` while holding; reentrant locks make the lease visible to nested calls here. */
  protected enter<T>(_holding: Holding, fn: () => Promise<T> | T): Promise<T> | T {
    return fn();
  }
}
