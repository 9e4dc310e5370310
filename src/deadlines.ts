/**
 * Deadlines of one length for many operations in flight, watched by one
 * timer. They run out in the order they were set, so only the oldest one
 * still open needs the timer. A Node timer per operation costs more than the
 * rest of a fast store round trip: arming and clearing one links and unlinks
 * it, and creates and drops a timer list whenever it is the only one.
 * @module
 */
import { performance } from 'node:perf_hooks';

interface Deadline {
  readonly at: number;
  readonly onExpire: () => void;
  open: boolean;
}

export class DeadlineQueue {
  /** Open and closed deadlines, oldest first; closed ones are dropped when the timer passes them. */
  private deadlines: Deadline[] = [];
  private first = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** @param ms how long each deadline runs */
  constructor(readonly ms: number) {}

  /**
   * Calls `onExpire` once `ms` have passed, unless the returned function is
   * called first (the operation finished).
   */
  set(onExpire: () => void): () => void {
    const deadline: Deadline = { at: performance.now() + this.ms, onExpire, open: true };
    if (this.stopped) return () => undefined;
    this.deadlines.push(deadline);
    this.timer ??= this.arm(this.ms);
    return () => {
      deadline.open = false;
      // Operations mostly finish in the order they started: drop the finished ones in front.
      if (this.deadlines[this.first] === deadline) this.dropClosed();
    };
  }

  /** `promise`, or a rejection with "no reply within … ms" once the deadline passed. */
  bound<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = this.set(() => {
        reject(new Error(`no reply within ${String(this.ms)} ms`));
      });
      promise.then(
        (value) => {
          done();
          resolve(value);
        },
        (error: unknown) => {
          done();
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /**
   * Stops the timer, for a store being closed: deadlines still open never
   * fire (closing the store fails what is still in flight), and none is set after.
   */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.stopped = true;
    this.deadlines = [];
    this.first = 0;
  }

  private arm(delay: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.expire();
    }, delay);
    // Whatever waits on an operation keeps the process alive, not its deadline.
    timer.unref();
    return timer;
  }

  private expire(): void {
    const now = performance.now();
    for (let deadline = this.deadlines[this.first]; deadline !== undefined;) {
      if (deadline.open) {
        if (deadline.at > now) break;
        deadline.open = false;
        deadline.onExpire();
        // The expired operation's owner may have stopped the queue (closing its connection).
        if (this.stopped) return;
      }
      this.first += 1;
      deadline = this.deadlines[this.first];
    }
    this.timer = undefined;
    this.dropClosed();
    const next = this.deadlines[this.first];
    if (next !== undefined) this.timer = this.arm(Math.max(1, Math.ceil(next.at - now)));
  }

  /** Moves past the closed deadlines in front; the array is cut now and then, not at every step. */
  private dropClosed(): void {
    while (this.deadlines[this.first]?.open === false) this.first += 1;
    if (this.first === this.deadlines.length) {
      this.deadlines = [];
      this.first = 0;
    } else if (this.first > 1024 && this.first * 2 > this.deadlines.length) {
      this.deadlines = this.deadlines.slice(this.first);
      this.first = 0;
    }
  }
}
