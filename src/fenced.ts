/**
 * Fenced resources: the resource side of fencing. A lease alone cannot stop
 * a paused process from writing late; the resource must compare fences. A
 * fenced resource remembers the highest fence it has seen and refuses reads
 * and writes that present a lower one with `StaleFenceError`.
 *
 * Reads are checked too, for read-modify-write: a stale holder that reads
 * before a newer holder writes would otherwise compute from old state and
 * could still slip its write in if the newer holder has not written yet.
 * Recording the reader's fence makes the older holder's later write fail.
 * @module
 */
import { InvalidArgumentError } from './errors.js';

/** A value guarded by fences (see the module doc). */
export interface FencedResource {
  /** The resource's key in its store. */
  readonly key: string;
  /**
   * The current value (`undefined` if never written), for the holder of
   * `fence`; records `fence` as seen.
   * @throws StaleFenceError when a higher fence was seen.
   */
  read(fence: number): Promise<string | undefined>;
  /**
   * Writes `value` for the holder of `fence`.
   * @throws StaleFenceError when a higher fence was seen; nothing is written.
   */
  write(fence: number, value: string): Promise<void>;
}

/** Checks a fence presented to a fenced resource; returns it unchanged. */
export function checkFence(fence: unknown): number {
  if (typeof fence !== 'number' || !Number.isSafeInteger(fence) || fence <= 0) {
    throw new InvalidArgumentError('fence', 'a lease fence (a positive safe integer)', fence);
  }
  return fence;
}

/** Checks a value written to a fenced resource; returns it unchanged. */
export function checkValue(value: unknown): string {
  if (typeof value !== 'string') throw new InvalidArgumentError('value', 'a string', value);
  return value;
}
