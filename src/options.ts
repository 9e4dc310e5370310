/**
 * Every option disref takes, with its doc, default and allowed range, in one
 * place. Validation errors name the option, the range and the value seen.
 * @module
 */
import { InvalidArgumentError } from './errors.js';
import {
  validateBoolean,
  validateDuration,
  validateKey,
  validateOptionsObject,
  validateSignal,
  validateTimeout,
} from './validate.js';

/** Options of one lock; defaults can be set for all locks on `connect({ defaults })`. */
export interface LockOptions {
  /**
   * Lease length in ms: how long the lock stays held if the holder stops
   * extending it (crash, pause, lost network).
   * @default 30_000
   * @example { ttl: 10_000 }
   */
  ttl?: number;
  /**
   * Longest wait for the lock in ms; `acquire()` then throws
   * `LockTimeoutError`. `0` tries once; `Infinity` waits forever.
   * @default Infinity
   */
  timeout?: number;
  /**
   * Poll interval in ms while waiting, used only where the backend cannot
   * notify waiters (jittered).
   * @default 50
   */
  retryInterval?: number;
  /**
   * Grant in arrival order. Defaults to `true` where the backend keeps a
   * waiter queue (memory, Redis); asking `true` of a backend that cannot is
   * an `InvalidArgumentError`. `false` lets callers barge.
   */
  fair?: boolean;
  /** Stops waiting for the lock when aborted (the lease, once held, is unaffected). */
  signal?: AbortSignal;
}

/** Per-call options of `acquire()` / `tryAcquire()` / `using()`. */
export interface AcquireOptions {
  /** Overrides the lock's `timeout` for this call. */
  timeout?: number;
  /** Stops waiting when aborted, in addition to the lock's own `signal`. */
  signal?: AbortSignal;
}

/** Lock options with every default applied. */
export interface ResolvedLockOptions {
  readonly ttl: number;
  readonly timeout: number;
  readonly retryInterval: number;
  readonly fair: boolean;
  readonly signal: AbortSignal | undefined;
}

export const DEFAULT_TTL = 30_000;
export const DEFAULT_RETRY_INTERVAL = 50;
/** @default 60_000: leases longer than this are refused; it bounds the wait after a store lost its data. */
export const DEFAULT_MAX_TTL = 60_000;
export const DEFAULT_HEARTBEAT_INTERVAL = 10_000;
export const DEFAULT_NAMESPACE = 'disref';

const LOCK_OPTION_NAMES = ['ttl', 'timeout', 'retryInterval', 'fair', 'signal'] as const;

/** Validates lock options (for `connect({ defaults })` or one lock) without applying defaults. */
export function validateLockOptions(value: unknown, argument: string, maxTtl: number): LockOptions {
  const raw = validateOptionsObject(value, argument, LOCK_OPTION_NAMES);
  const options: LockOptions = {};
  if (raw.ttl !== undefined) {
    options.ttl = validateDuration(raw.ttl, `${argument}.ttl`, { min: 1, max: maxTtl });
  }
  if (raw.timeout !== undefined)
    options.timeout = validateTimeout(raw.timeout, `${argument}.timeout`);
  if (raw.retryInterval !== undefined) {
    options.retryInterval = validateDuration(raw.retryInterval, `${argument}.retryInterval`, {
      min: 1,
      max: 60_000,
    });
  }
  const fair = validateBoolean(raw.fair, `${argument}.fair`);
  if (fair !== undefined) options.fair = fair;
  const signal = validateSignal(raw.signal, `${argument}.signal`);
  if (signal !== undefined) options.signal = signal;
  return options;
}

/** Applies defaults: the lock's own options, then the connection's, then the library's. */
export function resolveLockOptions(
  own: LockOptions,
  defaults: LockOptions,
  backend: { readonly name: string; readonly capabilities: { readonly fifo: boolean } },
  argument: string,
): ResolvedLockOptions {
  const fair = own.fair ?? defaults.fair ?? backend.capabilities.fifo;
  if (fair && !backend.capabilities.fifo) {
    throw new InvalidArgumentError(
      `${argument}.fair`,
      `false: the ${backend.name} backend cannot queue waiters in arrival order`,
      true,
    );
  }
  return {
    ttl: own.ttl ?? defaults.ttl ?? DEFAULT_TTL,
    timeout: own.timeout ?? defaults.timeout ?? Infinity,
    retryInterval: own.retryInterval ?? defaults.retryInterval ?? DEFAULT_RETRY_INTERVAL,
    fair,
    signal: own.signal ?? defaults.signal,
  };
}

/** Validates per-call acquire options. */
export function validateAcquireOptions(
  value: unknown,
  allowed: readonly (keyof AcquireOptions)[] = ['timeout', 'signal'],
): AcquireOptions {
  const raw = validateOptionsObject(value, 'options', allowed);
  const options: AcquireOptions = {};
  if (raw.timeout !== undefined) options.timeout = validateTimeout(raw.timeout, 'options.timeout');
  const signal = validateSignal(raw.signal, 'options.signal');
  if (signal !== undefined) options.signal = signal;
  return options;
}

/** Checks a namespace: a key-like string without `{`, `}` (used for Redis hash tags). */
export function validateNamespace(value: unknown): string {
  const namespace = validateKey(value, 'namespace');
  if (/[{}\s]/.test(namespace) || namespace.length > 64) {
    throw new InvalidArgumentError(
      'namespace',
      'at most 64 characters without braces or white space, e.g. "shop"',
      value,
    );
  }
  return namespace;
}
