/**
 * A lease on a lock: the fence, the local validity deadline, the signal that
 * aborts when the lease may be gone, and the verbs extend / release.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { BackendError, LockLostError } from '../errors.js';
import { publish } from '../events.js';
import type { Session, SessionResource } from '../session.js';
import { validateDuration } from '../validate.js';

/**
 * Margin for clock drift between this process and the store, in ms
 * (Redlock's formula: 1 % of the lease plus 2 ms).
 */
export function driftMargin(ttl: number): number {
  return Math.floor(ttl * 0.01) + 2;
}

/** What the store granted: one acquisition, shared by nested reentrant leases. */
export class HeldLock implements SessionResource {
  readonly key: string;
  readonly fence: number;
  readonly ttl: number;
  private readonly owner: string;
  private readonly session: Session;
  /** Made on first use of `signal` (an AbortSignal is costly to create); see {@link lostReason}. */
  private lost: AbortController | undefined;
  /** Why the lease may be gone, once it may be. */
  private lostReason: LockLostError | undefined;
  /** Monotonic time (performance.now()) until which the lease is surely valid. */
  private validUntil: number;
  private expiryTimer: NodeJS.Timeout | undefined;
  private extensionTimer: NodeJS.Timeout | undefined;
  private released = false;
  private readonly acquiredAt: number;

  constructor(options: {
    session: Session;
    key: string;
    owner: string;
    fence: number;
    ttl: number;
    /** performance.now() taken right before the successful attempt was sent. */
    attemptStart: number;
  }) {
    this.session = options.session;
    this.key = options.key;
    this.owner = options.owner;
    this.fence = options.fence;
    this.ttl = options.ttl;
    this.acquiredAt = options.attemptStart;
    this.validUntil = options.attemptStart + options.ttl - driftMargin(options.ttl);
    this.armExpiry();
    this.session.track(this);
  }

  get signal(): AbortSignal {
    if (this.lost === undefined) {
      this.lost = new AbortController();
      if (this.lostReason !== undefined) this.lost.abort(this.lostReason);
    }
    return this.lost.signal;
  }

  /** Why the lease may be gone (the reason `signal` aborts with), or undefined while it is not. */
  get lostError(): LockLostError | undefined {
    return this.lostReason;
  }

  /** ms left before the lease may have run out, on the local monotonic clock. */
  get remaining(): number {
    return Math.max(0, this.validUntil - performance.now());
  }

  /** Longest ttl an extension may ask for. */
  get maxTtl(): number {
    return this.session.maxTtl;
  }

  get isReleased(): boolean {
    return this.released;
  }

  check(): void {
    if (this.released) throw new LockLostError(this.key, this.fence, 'it was released');
    if (this.lostReason === undefined && performance.now() >= this.validUntil) {
      this.markLost('it ran out before it was extended');
    }
    if (this.lostReason !== undefined) throw this.lostReason;
  }

  async extend(ttl: number): Promise<void> {
    this.check();
    const start = performance.now();
    const extended = await this.session.backend.extend(this.key, this.owner, ttl);
    if (!extended) {
      this.markLost('the store no longer has it under this owner');
      throw this.lostReason ?? new LockLostError(this.key, this.fence, 'it was lost');
    }
    if (this.lostReason !== undefined) throw this.lostReason;
    // Released while the extension was in flight: nothing left to keep alive.
    if (this.released) return;
    this.validUntil = start + ttl - driftMargin(ttl);
    this.armExpiry();
    publish('lockExtended', () => ({ ...this.describe(), ttl }));
  }

  /** Releases in the store; resolves `false` when the lease was already gone there. */
  async release(): Promise<boolean> {
    if (this.released) return false;
    this.released = true;
    clearTimeout(this.expiryTimer);
    clearTimeout(this.extensionTimer);
    this.session.untrack(this);
    // A lost lease has run out in the store too, or belongs to someone else now.
    if (this.lostReason !== undefined) return false;
    const wasHeld = await this.session.backend.release(this.key, this.owner);
    publish('lockReleased', () => ({
      ...this.describe(),
      heldMs: performance.now() - this.acquiredAt,
      wasHeld,
    }));
    return wasHeld;
  }

  async releaseOnClose(): Promise<void> {
    try {
      await this.release();
    } catch {
      // Store unreachable while closing: the lease runs out by itself.
    }
  }

  /**
   * Keeps the lease extended until the returned stop function is called.
   * A refusal aborts the signal at once; a transient store error is retried
   * until the lease runs out locally (the expiry timer aborts it then).
   */
  keepExtended(): () => void {
    let stopped = false;
    const schedule = (delay: number): void => {
      if (stopped || this.lostReason !== undefined) return;
      this.extensionTimer = setTimeout(() => {
        this.extend(this.ttl).then(
          () => {
            schedule(Math.max(1, Math.floor(this.ttl / 3)));
          },
          (error: unknown) => {
            if (error instanceof BackendError) schedule(Math.max(1, Math.floor(this.ttl / 10)));
          },
        );
      }, delay);
      this.extensionTimer.unref();
    };
    schedule(Math.max(1, Math.floor(this.ttl / 3)));
    return () => {
      stopped = true;
      clearTimeout(this.extensionTimer);
    };
  }

  markLost(reason: string): void {
    if (this.lostReason !== undefined) return;
    clearTimeout(this.expiryTimer);
    clearTimeout(this.extensionTimer);
    this.lostReason = new LockLostError(this.key, this.fence, reason);
    this.lost?.abort(this.lostReason);
    publish('lockLost', () => ({ ...this.describe(), reason }));
  }

  private describe(): { key: string; fence: number; backend: string } {
    return { key: this.key, fence: this.fence, backend: this.session.backend.name };
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    const delay = Math.max(0, Math.ceil(this.validUntil - performance.now()));
    this.expiryTimer = setTimeout(() => {
      this.markLost('it ran out before it was extended');
    }, delay);
    this.expiryTimer.unref();
  }
}

/**
 * A held lock, as handed to the caller. `fence` goes with every write to the
 * protected resource; `check()` right before a side effect; `signal` to abort
 * work when the lease is lost.
 */
export class Lease implements AsyncDisposable {
  /** The lock's key. */
  readonly key: string;
  /** Fencing token: strictly greater than every fence handed out before for this key. */
  readonly fence: number;
  readonly #held: HeldLock;
  readonly #onRelease: () => Promise<boolean>;
  #released = false;

  /** @internal Leases are created by locks, not by users. */
  constructor(held: HeldLock, onRelease: () => Promise<boolean>) {
    this.#held = held;
    this.key = held.key;
    this.fence = held.fence;
    this.#onRelease = onRelease;
  }

  /**
   * Aborted (with a `LockLostError` as reason) when the lease may have run
   * out or an extension was refused. Not aborted by `release()`.
   */
  get signal(): AbortSignal {
    return this.#held.signal;
  }

  /** ms the lease surely remains valid, on the local monotonic clock. */
  get remaining(): number {
    return this.#held.remaining;
  }

  /**
   * Throws `LockLostError` (and aborts `signal`) if the lease may have run
   * out, for instance after this process was paused. No round trip: call it
   * right before each side effect.
   */
  check(): void {
    this.#held.check();
  }

  /**
   * Resets the lease to `ttl` ms (default: the lock's ttl). Throws
   * `LockLostError` if the store no longer has it for us; a `BackendError`
   * (store unreachable) leaves the lease running until it expires locally.
   */
  async extend(ttl?: number): Promise<void> {
    const length =
      ttl === undefined
        ? this.#held.ttl
        : validateDuration(ttl, 'ttl', { min: 1, max: this.#held.maxTtl });
    if (this.#released) {
      throw new LockLostError(this.key, this.fence, 'it was released');
    }
    await this.#held.extend(length);
  }

  /**
   * Releases the lock if this lease still owns it; never frees a lock that
   * someone else holds now. Resolves `false` if the lease had already run out
   * (or was released before). Safe to call twice.
   */
  async release(): Promise<boolean> {
    if (this.#released) return false;
    this.#released = true;
    return this.#onRelease();
  }

  /** `await using lease = await lock.acquire()` releases at block end. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
