/**
 * The `Backend` interface: the only code that talks to a store implements it.
 * Locks, references and the CLI are written once, on top of these atomic
 * operations. Every backend passes the same conformance suite
 * (`test/conformance/`).
 *
 * Conventions every implementation keeps:
 * - keys passed in are the caller's logical keys, already validated; the
 *   backend adds the namespace and maps them to what its store can hold;
 * - every operation is atomic in the store (one script, one CAS loop, or one
 *   synchronous step);
 * - a store that cannot be reached gives a `BackendError` naming its address
 *   within the backend's operation timeout; nothing hangs forever.
 * @module
 */

/** How a lock is held: alone, or shared with other `shared` holders. */
export type LockMode = 'exclusive' | 'shared';

/** What a backend can do; asking a backend for more fails up front. */
export interface Capabilities {
  /** Waiters are woken by the store (or in-process) when a lock is released. */
  readonly notify: boolean;
  /** A waiter queue in the store grants in arrival order (`fair: true`). */
  readonly fifo: boolean;
  /** Shared (read) holders next to an exclusive writer state (`rwlock`). */
  readonly sharedLocks: boolean;
  /** Keys can be listed (for `disref status`). */
  readonly listKeys: boolean;
  /** Several OS processes can share the store. */
  readonly crossProcess: boolean;
  /**
   * A release grants the lock to the queued waiters that can have it next
   * (see {@link HandOff}), instead of letting them race for it.
   */
  readonly handOff: boolean;
}

export interface AcquireRequest {
  readonly key: string;
  /** Unguessable token of this acquisition; only it can extend or release. */
  readonly owner: string;
  readonly mode: LockMode;
  /** Lease length in ms. */
  readonly ttl: number;
  /**
   * Respect the waiter queue: grant only when no earlier waiter that
   * conflicts is queued. Only on backends with `fifo`.
   */
  readonly fair: boolean;
  /**
   * When denied, register as a waiter (in the queue when `fair`, else as a
   * pending writer so readers cannot starve writers) until `leave()` or until
   * the registration expires `waiterTtl` ms after this call. A queued waiter
   * may be handed the lock by a release (with `ttl` from then on): see
   * {@link HandOff}.
   */
  readonly wait: boolean;
  /** How long a waiter registration lives without being renewed by a new attempt. */
  readonly waiterTtl: number;
}

export type AcquireResult =
  | { readonly granted: true; readonly fence: number }
  | {
      readonly granted: false;
      /** ms until the current holders' leases run out at the latest (a bound on the wait). */
      readonly retryAfter: number;
      /**
       * True when what stands in the way is the data-loss quarantine (the store
       * may have lost leases that still run; README "Data loss"), not a holder:
       * `retryAfter` is then the ms until the quarantine ends.
       */
      readonly quarantined?: boolean;
    };

/** One holder of a lock, as seen by `inspect()`. */
export interface HolderState {
  readonly owner: string;
  readonly mode: LockMode;
  readonly fence: number;
  /** ms left on the lease, as the store sees it. */
  readonly ttlLeft: number;
}

/** A lock's state, for the conflict lock and `disref status`. */
export interface LockState {
  readonly key: string;
  readonly holders: readonly HolderState[];
  readonly waiters: number;
}

/**
 * The store gave a released lock straight to a queued waiter (fair mode):
 * that waiter holds it from now on, with this fence, and needs no further
 * round trip to take it.
 */
export interface HandOff {
  readonly owner: string;
  readonly fence: number;
}

/**
 * Called when a lock may have become free, or with `handOff` when the store
 * granted it to a queued waiter (listeners of other owners ignore those).
 * Must not throw.
 */
export type ReleaseListener = (handOff?: HandOff) => void;

export interface Backend extends ReferenceOperations {
  /** Short name used in errors and status, e.g. `memory`, `redis`. */
  readonly name: string;
  /** Address for errors, e.g. `redis://127.0.0.1:6379` (no credentials). */
  readonly address: string;
  readonly capabilities: Capabilities;

  /** Tries once to take the lock, with a fresh fence on success. */
  acquire(request: AcquireRequest): Promise<AcquireResult>;
  /** Resets the lease to `ttl` ms from now if `owner` still holds it. */
  extend(key: string, owner: string, ttl: number): Promise<boolean>;
  /** Releases if `owner` still holds it; wakes waiters. Never frees another owner's lock. */
  release(key: string, owner: string): Promise<boolean>;
  /**
   * Gives an acquisition up entirely (it timed out or was aborted): removes
   * its waiter registration and, if a hand-off granted it the lock
   * meanwhile, releases that too; wakes the others.
   */
  leave(key: string, owner: string): Promise<void>;
  /**
   * Calls `listener` whenever the lock at `key` may have become free.
   * Resolves once the subscription is live, so a release that happens after
   * it resolves is never missed. Backends with `notify` report every
   * release; the others report at least releases made from this process
   * (waiters then also poll for releases made elsewhere). With `owner`, the
   * waiter's token, store-side hand-offs to that owner are reported too
   * (backends with `handOff` may send those to the waiter's process only).
   */
  onRelease(key: string, listener: ReleaseListener, owner?: string): Promise<() => void>;
  /**
   * Whether `onRelease(key, listener, owner)` would be live at once, without
   * a round trip (subscriptions kept open from a recent wait). A waiter then
   * listens before its first attempt instead of after a denial, which saves
   * an attempt. Optional: a backend without it is treated as never ready.
   */
  isListening?(key: string, owner?: string): boolean;
  /** The lock's current holders and waiter count, or `null` when free. */
  inspect(key: string): Promise<LockState | null>;
  /**
   * What the namespace holds now, for `disref status`: locks, references,
   * processes. A store that cannot list keys returns what it can and says
   * what it could not in `incomplete`. With `prefix`, only the locks whose key
   * and the resources whose name start with it (every process still): the
   * store's listing limits then count those only.
   */
  snapshot(prefix?: string): Promise<StoreSnapshot>;

  /** Forgets a process that closed. */
  removeProcess(processId: string): Promise<void>;

  /** Frees connections this backend opened; never a client the user passed in. */
  close(): Promise<void>;
}

/** Where a process runs, as recorded with its first heartbeat. */
export interface ProcessInfo {
  readonly host: string;
  readonly pid: number;
}

/** One reference-counted resource, as seen by `snapshot()`. */
export interface ResourceState {
  readonly resource: string;
  /** Process ids of the holders (dead ones may still appear until pruned). */
  readonly holders: readonly string[];
  readonly timesModified: number;
  /** The last holder is gone and the completion is pending or running. */
  readonly completing: boolean;
}

/** One process, as seen by `snapshot()`. */
export interface ProcessState {
  readonly id: string;
  readonly info: ProcessInfo | undefined;
  /** ms before its heartbeat runs out; 0 or less means dead. */
  readonly ttlLeft: number;
  /** ms since its last heartbeat, when the store knows. */
  readonly heartbeatAge: number | undefined;
}

/** What a namespace holds now. */
export interface StoreSnapshot {
  readonly locks: readonly LockState[];
  readonly references: readonly ResourceState[];
  readonly processes: readonly ProcessState[];
  /** Set when the store could not list everything, saying what is missing. */
  readonly incomplete: string | undefined;
  /**
   * ms until the data-loss quarantine ends (README "Data loss"), when one holds
   * grants back: the longest of any server or Cluster slot; undefined when none.
   */
  readonly quarantineLeft: number | undefined;
}

/**
 * The longest of the quarantines left on the servers of one store (ms; undefined
 * or 0: none there), as `StoreSnapshot.quarantineLeft`: undefined when none holds.
 */
export function longestQuarantine(
  lefts: readonly (number | null | undefined)[],
): number | undefined {
  const longest = Math.max(0, ...lefts.map((left) => left ?? 0));
  return longest > 0 ? longest : undefined;
}

/** A claim on running a resource's completion; only its holder may finish it. */
export interface CompletionClaim {
  readonly resource: string;
  /** Unguessable token of this claim. */
  readonly token: string;
  /** 1 for the first run of the completion, then 2, 3... on retries. */
  readonly attempt: number;
}

/**
 * The atomic operations distributed reference counting needs. A process is
 * live while its heartbeat has not run out; one that ran out is dead for
 * good (its next heartbeat is refused, and it takes a new identity), so
 * pruning a dead holder can never be undone by a late heartbeat.
 */
export interface ReferenceOperations {
  /**
   * Records a heartbeat. `first` registers a new process (with `info`, shown
   * by `disref status`). Resolves `false` when a known process had already
   * run out (it was, or may have been, declared dead): it must take a new
   * identity.
   */
  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean>;
  /** Registers `processId` as a holder of `resource`; `false` if the process is dead. */
  addReference(resource: string, processId: string): Promise<boolean>;
  /**
   * Removes `processId`'s reference, pruning dead holders. When no live
   * holder remains, the caller gets the completion claim (for `claimTtl`
   * ms); otherwise `claim` is null. `removed` is false when the process held
   * no reference (it was pruned as dead, or never held one).
   */
  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }>;
  /** Live holders, dead ones pruned. */
  countReferences(resource: string): Promise<number>;
  incrementTimesModified(resource: string, by: number): Promise<number>;
  timesModified(resource: string): Promise<number>;
  /** Keeps a completion claim alive while its handler runs. */
  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean>;
  /**
   * The completion succeeded: ends the lifetime it covered, if the claim still
   * holds (else false, changing nothing). `seenModified` is the
   * `timesModified` its handler was given. With no reference made since the
   * claim, the resource's keys are deleted. Processes that referenced it
   * while the completion ran began its next lifetime, which keeps them and
   * what was modified beyond `seenModified`; if that lifetime has ended too
   * (no holder left), its own completion is due at once (attempt 1).
   */
  finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean>;
  /** The completion failed: drop the claim so that recovery retries it. */
  abandonCompletion(claim: CompletionClaim): Promise<void>;
  /**
   * Recovery: declares processes whose heartbeat ran out dead, prunes their
   * references, and queues resources left without live holders for
   * completion. Returns how many dead processes were handled.
   */
  reapDeadProcesses(): Promise<number>;
  /**
   * Recovery: claims one resource of one of `kinds` that awaits completion
   * (its last holder died, or its completer died or failed), or null.
   */
  claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null>;
}

/** The kind of a resource: the text before the first ':' (the whole name without one). */
export function kindOf(resource: string): string {
  const colon = resource.indexOf(':');
  return colon < 0 ? resource : resource.slice(0, colon);
}
