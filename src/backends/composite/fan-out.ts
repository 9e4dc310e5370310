/**
 * Fan-out for backends built from several member backends (sharded,
 * quorum): start one operation on every member at once, and stop waiting as
 * soon as the answer is known, so that one slow or frozen member does not
 * hold up an answer the others already settled.
 * @module
 */
import { BackendError } from '../../errors.js';

/** What one member gave: a value, or the error it failed with. */
export type Outcome<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** The result of {@link gather}. */
export interface Gathered<T> {
  /** What each member gave when the answer was known; `undefined` for members still running. */
  readonly outcomes: readonly (Outcome<T> | undefined)[];
  /**
   * Each member's eventual outcome; these settle even after `gather`
   * resolved (and never reject), so late answers can still be cleaned up.
   */
  readonly settled: readonly Promise<Outcome<T>>[];
  /** The deadline passed with members still running. */
  readonly timedOut: boolean;
}

export interface GatherOptions<T> {
  /** True once the outcomes so far decide the answer; the rest is not waited for. */
  readonly decided?: (outcomes: readonly (Outcome<T> | undefined)[]) => boolean;
  /** Resolve after this many ms even if members are still running. */
  readonly deadline?: number;
}

/** Runs `run(i)` for every member `i` in `[0, count)` at once; see {@link GatherOptions}. */
export function gather<T>(
  count: number,
  run: (index: number) => Promise<T>,
  options: GatherOptions<T> = {},
): Promise<Gathered<T>> {
  const outcomes: (Outcome<T> | undefined)[] = Array.from({ length: count }, () => undefined);
  const settled = outcomes.map((_, index) => settle(() => run(index)));
  if (count === 0) return Promise.resolve({ outcomes, settled, timedOut: false });
  return new Promise((resolve) => {
    let left = count;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (timedOut: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ outcomes: [...outcomes], settled, timedOut });
    };
    settled.forEach((promise, index) => {
      void promise.then((outcome) => {
        if (done) return;
        outcomes[index] = outcome;
        left -= 1;
        if (left === 0 || options.decided?.(outcomes) === true) finish(false);
      });
    });
    // Not unref'd: a caller awaits it, and it is cleared as soon as the answer is known.
    if (options.deadline !== undefined) {
      timer = setTimeout(
        () => {
          // Timers run before I/O in an event loop turn: after a pause of this process (busy
          // CPU, GC), replies that came in time may still be unread. Read them first.
          setImmediate(() => {
            finish(true);
          });
        },
        Math.max(0, options.deadline),
      );
    }
  });
}

function settle<T>(run: () => Promise<T>): Promise<Outcome<T>> {
  let promise: Promise<T>;
  try {
    promise = run();
  } catch (error) {
    return Promise.resolve({ ok: false, error });
  }
  return promise.then(
    (value) => ({ ok: true, value }) as const,
    (error: unknown) => ({ ok: false, error }) as const,
  );
}

/** The first member failure among `outcomes`, if any. */
export function firstFailure<T>(
  outcomes: readonly (Outcome<T> | undefined)[],
): { readonly error: unknown } | undefined {
  for (const outcome of outcomes) if (outcome !== undefined && !outcome.ok) return outcome;
  return undefined;
}

/** How many members make a majority of `count`. */
export function majority(count: number): number {
  return Math.floor(count / 2) + 1;
}

/**
 * One member's failure in a few words, for an error that lists several:
 * `redis://h:p (connect ECONNREFUSED 127.0.0.1:6379)`. A member that gave no
 * answer in time is `redis://h:p (no reply within 500 ms)`.
 */
export function describeMemberFailure(
  address: string,
  outcome: Outcome<unknown> | undefined,
  waited: number,
): string {
  if (outcome === undefined) return `${address} (no reply within ${String(waited)} ms)`;
  if (outcome.ok) return `${address} (answered)`;
  const { error } = outcome;
  let reason = error instanceof Error ? error.message : String(error);
  if (error instanceof BackendError) {
    // Drop the "lock KEY: store ADDRESS: " prefix and the advice: the caller's error has its own.
    const marker = `store ${error.address}: `;
    const at = reason.indexOf(marker);
    if (at >= 0) reason = reason.slice(at + marker.length);
    const advice = reason.indexOf('; check ');
    if (advice >= 0) reason = reason.slice(0, advice);
  }
  return `${address} (${reason})`;
}
