/**
 * `disref.conflictLock(key, { isConflict })`: memcachedlock's `zlock` for
 * Node. Optimistic work (a version-checked ORM transaction, a SERIALIZABLE
 * transaction) runs without the lock; when the lock is busy, or the work
 * fails with a conflict, the caller takes the lock, keeps it reserved for
 * itself, and re-runs the work with fresh state while holding it. Shaped
 * like etcd's STM loop: run, and retry only on a conflict, bounded by
 * `retries`; any other error stops at once.
 * @module
 */
import { ConflictError, InvalidArgumentError } from '../errors.js';
import type { AcquireOptions } from '../options.js';
import type { Session } from '../session.js';
import { assertFunction } from '../validate.js';
import type { Lease } from './lease.js';
import type { Lock } from './lock.js';

/** What one run of the work is told. */
export interface ConflictAttempt {
  /** 0 for the first run; the handler passed to `run` sees 1, 2, ... on retries. */
  readonly attempt: number;
  /** The lease while the run holds the lock; `undefined` for an optimistic run. */
  readonly lease: Lease | undefined;
}

export interface ConflictLockOptions {
  /** Tells a conflict (retry under the lock) from any other error (stop). */
  isConflict: (error: unknown) => boolean;
  /**
   * Re-runs after a conflict, under the lock.
   * @default 3
   */
  retries?: number;
  /**
   * ms the lock stays reserved for the retrying caller between runs (the
   * lease length; it is kept extended while the work runs).
   * @default 1000
   */
  reserve?: number;
}

export class ConflictLock {
  readonly key: string;
  readonly #session: Session;
  readonly #lock: Lock;
  readonly #isConflict: (error: unknown) => boolean;
  readonly #retries: number;

  /** @internal Created by `disref.conflictLock()`. */
  constructor(
    session: Session,
    lock: Lock,
    options: { isConflict: (error: unknown) => boolean; retries: number },
  ) {
    this.#session = session;
    this.key = lock.key;
    this.#lock = lock;
    this.#isConflict = options.isConflict;
    this.#retries = options.retries;
  }

  /**
   * Runs `fn`, retrying on conflicts as described above.
   * @throws ConflictError after `retries` re-runs still conflicted (the last conflict is `cause`).
   */
  async run<T>(
    fn: (attempt: ConflictAttempt) => Promise<T> | T,
    options?: AcquireOptions,
  ): Promise<T> {
    assertFunction(fn, 'fn');
    this.#session.assertOpen();
    let attempt = 0;
    const busy = await this.#session.backend.inspect(this.key);
    if (busy === null || busy.holders.length === 0) {
      try {
        return await fn({ attempt, lease: undefined });
      } catch (error) {
        this.#rethrowUnlessRetryable(error, attempt);
      }
      attempt += 1;
    }
    return this.#lock.using(async (lease) => {
      for (;;) {
        try {
          return await fn({ attempt, lease });
        } catch (error) {
          this.#rethrowUnlessRetryable(error, attempt);
        }
        attempt += 1;
      }
    }, options);
  }

  #rethrowUnlessRetryable(error: unknown, attempt: number): void {
    if (!this.#isConflict(error)) throw error;
    if (attempt >= this.#retries) throw new ConflictError(this.key, attempt + 1, error);
  }
}

/** Validates the conflict-specific options; returns them with defaults. */
export function validateConflictOptions(value: ConflictLockOptions): {
  isConflict: (error: unknown) => boolean;
  retries: number;
  reserve: number;
} {
  const isConflict: unknown = value.isConflict;
  assertFunction(isConflict, 'options.isConflict');
  const retries = value.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0 || retries > 1000) {
    throw new InvalidArgumentError('options.retries', 'a whole number in [0, 1000]', retries);
  }
  return {
    isConflict: isConflict as (error: unknown) => boolean,
    retries,
    reserve: value.reserve ?? 1000,
  };
}
