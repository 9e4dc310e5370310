/**
 * Every error disref throws on purpose. Each class has a stable `code`, a
 * `name` equal to the class name, and the key (and fence, where there is one)
 * as readonly fields, so callers can branch on them without parsing messages.
 * @module
 */

/** Stable machine-readable codes of disref errors. */
export type DisrefErrorCode =
  | 'ERR_DISREF_LOCK_TIMEOUT'
  | 'ERR_DISREF_LOCK_LOST'
  | 'ERR_DISREF_CONFLICT'
  | 'ERR_DISREF_BACKEND'
  | 'ERR_DISREF_INVALID_ARGUMENT'
  | 'ERR_DISREF_STALE_FENCE';

/** Base class of every error disref throws on purpose. */
export class DisrefError extends Error {
  /** Stable code; safe to compare against. */
  readonly code: DisrefErrorCode;

  constructor(code: DisrefErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The lock could not be acquired within `timeout` ms: another holder kept it,
 * or (`quarantined`) the store was in its data-loss quarantine.
 */
export class LockTimeoutError extends DisrefError {
  readonly key: string;
  readonly timeout: number;
  /**
   * True when the last attempt was refused by the data-loss quarantine rather
   * than by a holder: the store may have lost leases that still run (a server
   * restarted without persistence, a flush, an eviction), so it grants nothing
   * until they have surely ended (README, "Data loss").
   */
  readonly quarantined: boolean;

  /** @param quarantineLeft ms of quarantine left at the last attempt; undefined when a holder was in the way */
  constructor(key: string, timeout: number, quarantineLeft?: number) {
    super(
      'ERR_DISREF_LOCK_TIMEOUT',
      quarantineLeft === undefined
        ? `lock ${key}: not acquired within ${String(timeout)} ms; another holder kept it. ` +
            'Raise `timeout`, use tryAcquire() to skip, or find the holder with `disref status`.'
        : `lock ${key}: not acquired within ${String(timeout)} ms; the store grants no lease ` +
            `for about ${(Math.max(0, quarantineLeft) / 1000).toFixed(1)} s more (data-loss quarantine): ` +
            'it may have lost leases that are still running (its server restarted without ' +
            'persistence, or its data was flushed or evicted), and waits until they have surely ' +
            'ended (up to about `maxTtl`). A namespace used for the first time on a freshly started ' +
            'server waits this out once. See "Data loss" in the README.',
    );
    this.key = key;
    this.timeout = timeout;
    this.quarantined = quarantineLeft !== undefined;
  }
}

/**
 * The lease may no longer be valid: it ran out on the local clock, an
 * extension was refused, or the store lost it. Stop the side effect.
 */
export class LockLostError extends DisrefError {
  readonly key: string;
  readonly fence: number;

  constructor(key: string, fence: number, reason: string, options?: ErrorOptions) {
    super(
      'ERR_DISREF_LOCK_LOST',
      `lock ${key}: lease with fence ${String(fence)} lost (${reason}); ` +
        'do not perform further side effects under it. Acquire the lock again, or use a longer ttl / lock.using() to keep it extended.',
      options,
    );
    this.key = key;
    this.fence = fence;
  }
}

/** A conflict-retry lock gave up after its retries; `cause` is the last conflict. */
export class ConflictError extends DisrefError {
  readonly key: string;
  /** How many times the work ran (the first optimistic run included). */
  readonly attempts: number;

  constructor(key: string, attempts: number, cause: unknown) {
    super(
      'ERR_DISREF_CONFLICT',
      `lock ${key}: work still conflicted after ${String(attempts)} attempts; ` +
        'raise `retries`, or look at the cause for the conflicting writer.',
      { cause },
    );
    this.key = key;
    this.attempts = attempts;
  }
}

/**
 * A fenced resource refused a read or write: a holder with a higher fence
 * has used it since, so this caller's lease is stale (it was paused, or its
 * lease ran out). Nothing was written.
 */
export class StaleFenceError extends DisrefError {
  /** The resource's key. */
  readonly key: string;
  /** The fence the caller presented. */
  readonly fence: number;
  /** The highest fence the resource has seen. */
  readonly highest: number;

  constructor(key: string, fence: number, highest: number) {
    super(
      'ERR_DISREF_STALE_FENCE',
      `resource ${key}: fence ${String(fence)} is older than ${String(highest)}, already used by a later holder; ` +
        'this lease is stale: stop, and acquire the lock again before retrying',
    );
    this.key = key;
    this.fence = fence;
    this.highest = highest;
  }
}

/** The store could not be reached or answered something unusable. */
export class BackendError extends DisrefError {
  /** Address of the store, e.g. `redis://127.0.0.1:6379`. */
  readonly address: string;
  /** The key the operation was about, when there was one. */
  readonly key: string | undefined;

  constructor(address: string, message: string, options?: ErrorOptions & { key?: string }) {
    super(
      'ERR_DISREF_BACKEND',
      `${options?.key === undefined ? '' : `lock ${options.key}: `}store ${address}: ${message}`,
      options,
    );
    this.address = address;
    this.key = options?.key;
  }
}

/** A caller passed a value disref cannot use; nothing reached the store. */
export class InvalidArgumentError extends DisrefError {
  /** Name of the argument or option, e.g. `ttl` or `key`. */
  readonly argument: string;
  /** The value that was received. */
  readonly received: unknown;

  constructor(argument: string, expected: string, received: unknown) {
    super(
      'ERR_DISREF_INVALID_ARGUMENT',
      `${argument}: expected ${expected}, received ${describe(received)}`,
    );
    this.argument = argument;
    this.received = received;
  }
}

/** A short, safe rendering of a received value for error messages. */
function describe(value: unknown): string {
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 60)}…` : value;
    return `${JSON.stringify(shown)} (string of length ${String(value.length)})`;
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${String(value)} (${typeof value})`;
  }
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}
