/**
 * The one acquisition loop every lock kind uses: try, and while denied wait
 * for a release notification (or poll where the backend cannot notify),
 * bounded by the timeout and abortable by signals.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { LockMode } from '../backend.js';
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
  const linked = linkSignals([options.signal, call.signal, session.signal]);
  const signal = linked.signal;

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
    if (signal.aborted) {
      // The grant raced an abort: give it back instead of leaking it.
      await held.releaseOnClose();
      signal.throwIfAborted();
    }
    publish('lockAcquired', () => ({
      key,
      fence,
      backend: backend.name,
      waitedMs: performance.now() - calledAt,
    }));
    return held;
  };

  try {
    for (;;) {
      // Handed the lock on release: it was granted after our last attempt started,
      // so counting the lease from that moment never overstates it.
      const granted = handedOff();
      if (granted !== undefined) return await take(granted.fence, lastAttemptStart);
      signal.throwIfAborted();
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
        throw new LockTimeoutError(key, call.timeout);
      }
      if (unsubscribe === undefined) {
        // Subscribe only once denied, so an uncontended acquire is one round trip; then try
        // again at once, since the release may have come before the subscription was live.
        // Even a polling backend wakes waiters at once for releases made in this process.
        unsubscribe = await backend.onRelease(key, (granted) => {
          if (granted === undefined) {
            wakeup.wake();
          } else if (granted.owner === owner) {
            handOff = { fence: granted.fence, seenAt: performance.now() };
            wakeup.wake();
          }
        });
        continue;
      }
      const delay = notifying ? pause : jitter(pause);
      await wakeup.wait(Math.min(result.retryAfter, delay, left), signal);
    }
  } finally {
    linked.dispose();
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

/**
 * One signal that aborts when any of `signals` does. Unlike AbortSignal.any,
 * it detaches from long-lived sources (the session) when disposed.
 */
function linkSignals(signals: readonly (AbortSignal | undefined)[]): {
  signal: AbortSignal;
  dispose: () => void;
} {
  const controller = new AbortController();
  const sources = signals.filter((source): source is AbortSignal => source !== undefined);
  const onAbort = (event: Event): void => {
    controller.abort((event.target as AbortSignal).reason);
  };
  for (const source of sources) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener('abort', onAbort, { once: true });
  }
  return {
    signal: controller.signal,
    dispose: () => {
      for (const source of sources) source.removeEventListener('abort', onAbort);
    },
  };
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

  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.resolve = undefined;
        resolve();
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        this.resolve = undefined;
        reject(signal.reason as Error);
      };
      const timer = setTimeout(finish, Math.max(0, ms));
      this.resolve = finish;
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
