/**
 * The one acquisition loop every lock kind uses: try, and while denied wait
 * for a release notification (or poll where the backend cannot notify),
 * bounded by the timeout and abortable by signals.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { HandOff, LockMode } from '../backend.js';
import { LockTimeoutError } from '../errors.js';
import { publish } from '../events.js';
import type { ResolvedLockOptions } from '../options.js';
import type { Session } from '../session.js';
import { HeldLock } from './lease.js';

/** Longest wait between attempts on a notifying backend: a safety net, not the mechanism. */
const NOTIFY_SAFETY_NET = 1000;
/** A waiter registration outlives this many missed attempts before it is dropped. */
const WAITER_TTL_FACTOR = 3;

export interface AcquireContext {
  readonly session: Session;
  readonly key: string;
  readonly mode: LockMode;
  readonly options: ResolvedLockOptions;
}

/** An unguessable owner token; the session id in front lets `status` name the holder. */
export function newOwnerToken(sessionId: string): string {
  // randomUUID draws from a cached entropy pool: 122 random bits, far cheaper than randomBytes.
  return `${sessionId}:${randomUUID()}`;
}

/**
 * Takes the lock, waiting up to `timeout` ms. Resolves `null` on timeout when
 * `throwOnTimeout` is false; rejects with `LockTimeoutError` otherwise, and
 * with the abort reason when a signal aborts the wait.
 */
export async function acquireHeld(
  context: AcquireContext,
  call: { timeout: number; signal: AbortSignal | undefined; throwOnTimeout: boolean },
): Promise<HeldLock | null> {
  const { session, key, mode, options } = context;
  session.assertOpen();
  const backend = session.backend;
  // Watched only while waiting: an attempt that is granted at once adds no listener.
  const signals = watchedSignals(options.signal, call.signal, session.signal);

  const owner = newOwnerToken(session.id);
  const wait = call.timeout > 0;
  const notifying = backend.capabilities.notify;
  const pollInterval = notifying ? NOTIFY_SAFETY_NET : options.retryInterval;
  const waiterTtl = WAITER_TTL_FACTOR * Math.max(pollInterval, options.retryInterval) + 1000;
  const calledAt = performance.now();
  const deadline = calledAt + call.timeout;

  const wakeup = new Wakeup();
  let unsubscribe: (() => void) | undefined;
  let registered = false;
  /** A grant the store made to this waiter on release (fair queue), and when it was seen. */
  let handOff: { fence: number; seenAt: number } | undefined;
  // Read through a function: the listener sets `handOff` between awaits, which narrowing cannot see.
  const handedOff = (): { fence: number; seenAt: number } | undefined => handOff;
  let lastAttemptStart = calledAt;
  // On a notifying backend, attempts also renew the queue entry and bound how
  // stale `lastAttemptStart` is, which a handed-off lease counts its validity from.
  const pause = notifying
    ? Math.max(1, Math.min(pollInterval, Math.floor(options.ttl / 4)))
    : options.retryInterval;

  const take = async (fence: number, attemptStart: number): Promise<HeldLock> => {
    registered = false;
    const held = new HeldLock({ session, key, owner, fence, ttl: options.ttl, attemptStart });
    const aborted = abortedAmong(signals);
    if (aborted !== undefined) {
      // The grant raced an abort: give it back instead of leaking it.
      await held.releaseOnClose();
      aborted.throwIfAborted();
    }
    publish('lockAcquired', () => ({
      key,
      fence,
      backend: backend.name,
      waitedMs: performance.now() - calledAt,
    }));
    return held;
  };

  const listener = (granted: HandOff | undefined): void => {
    if (granted === undefined) {
      wakeup.wake();
    } else if (granted.owner === owner) {
      handOff = { fence: granted.fence, seenAt: performance.now() };
      wakeup.wake();
    }
  };

  try {
    // A lock waited for recently is still subscribed to: listen before the first
    // attempt (no round trip), so a denial can be waited on without a second attempt.
    if (wait && backend.isListening?.(key, owner) === true) {
      unsubscribe = await backend.onRelease(key, listener, owner);
    }
    for (;;) {
      // Handed the lock on release: it was granted after our last attempt started,
      // so counting the lease from that moment never overstates it.
      const granted = handedOff();
      if (granted !== undefined) return await take(granted.fence, lastAttemptStart);
      abortedAmong(signals)?.throwIfAborted();
      wakeup.reset();
      const attemptStart = performance.now();
      lastAttemptStart = attemptStart;
      const result = await backend.acquire({
        key,
        owner,
        mode,
        ttl: options.ttl,
        fair: options.fair,
        wait,
        waiterTtl,
      });
      if (result.granted) return await take(result.fence, attemptStart);
      registered = wait;
      // A hand-off seen before an attempt that was then denied has run out since.
      const stale = handedOff();
      if (stale !== undefined && stale.seenAt < attemptStart) handOff = undefined;
      if (handedOff() !== undefined) continue;
      const left = deadline - performance.now();
      if (left <= 0) {
        if (!call.throwOnTimeout) return null;
        throw new LockTimeoutError(
          key,
          call.timeout,
          result.quarantined === true
            ? result.retryAfter - (performance.now() - attemptStart)
            : undefined,
        );
      }
      if (unsubscribe === undefined) {
        // Subscribe only once denied, so an uncontended acquire is one round trip; then try
        // again at once, since the release may have come before the subscription was live.
        // Even a polling backend wakes waiters at once for releases made in this process.
        unsubscribe = await backend.onRelease(key, listener, owner);
        continue;
      }
      const delay = notifying ? pause : jitter(pause);
      await wakeup.wait(Math.min(result.retryAfter, delay, left), signals);
    }
  } finally {
    unsubscribe?.();
    if (registered) await leaveQuietly(context, owner);
  }
}

async function leaveQuietly(context: AcquireContext, owner: string): Promise<void> {
  try {
    await context.session.backend.leave(context.key, owner);
  } catch {
    // Unreachable store: the registration expires by itself after waiterTtl.
  }
}

/** Between 50 % and 150 % of `ms`, so pollers do not retry in lockstep. */
function jitter(ms: number): number {
  return Math.max(1, Math.round(ms * (0.5 + Math.random())));
}

/** The signals that stop a wait, without the undefined ones. */
function watchedSignals(...signals: (AbortSignal | undefined)[]): AbortSignal[] {
  return signals.filter((signal): signal is AbortSignal => signal !== undefined);
}

/** The first of `signals` that aborted, if any. */
function abortedAmong(signals: readonly AbortSignal[]): AbortSignal | undefined {
  for (const signal of signals) if (signal.aborted) return signal;
  return undefined;
}

/** A one-shot wake-up that a notification or a timeout resolves, abortable. */
class Wakeup {
  private woken = false;
  private resolve: (() => void) | undefined;

  wake(): void {
    this.woken = true;
    this.resolve?.();
  }

  reset(): void {
    this.woken = false;
  }

  /** Resolves when woken or after `ms`; rejects with the reason of the first of `signals` to abort. */
  wait(ms: number, signals: readonly AbortSignal[]): Promise<void> {
    if (this.woken) return Promise.resolve();
    const aborted = abortedAmong(signals);
    if (aborted !== undefined) return Promise.reject(aborted.reason as Error);
    return new Promise<void>((resolve, reject) => {
      const detach = (): void => {
        clearTimeout(timer);
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        this.resolve = undefined;
      };
      const finish = (): void => {
        detach();
        resolve();
      };
      const onAbort = (event: Event): void => {
        detach();
        reject((event.target as AbortSignal).reason as Error);
      };
      const timer = setTimeout(finish, Math.max(0, ms));
      this.resolve = finish;
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
