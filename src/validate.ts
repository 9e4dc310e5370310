/**
 * Up-front checks of caller input. Everything here throws
 * {@link InvalidArgumentError} before anything reaches a store.
 * @module
 */
import { InvalidArgumentError } from './errors.js';

/** Longest key accepted, in UTF-8 bytes. Backends hash keys their store cannot hold. */
export const MAX_KEY_BYTES = 8192;

// C0 and C1 control characters and DEL: invisible in logs, forbidden by memcached.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

/** Checks a lock key or resource name; returns it unchanged. */
export function validateKey(key: unknown, argument = 'key'): string {
  if (typeof key !== 'string') {
    throw new InvalidArgumentError(argument, 'a non-empty string such as "invoice:42"', key);
  }
  if (key.length === 0) {
    throw new InvalidArgumentError(argument, 'a non-empty string such as "invoice:42"', key);
  }
  if (CONTROL_CHARACTERS.test(key)) {
    throw new InvalidArgumentError(
      argument,
      'a string without control characters (remove newlines, tabs and NUL)',
      key,
    );
  }
  if (!key.isWellFormed()) {
    throw new InvalidArgumentError(argument, 'well-formed Unicode (no lone surrogates)', key);
  }
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(
      argument,
      `at most ${String(MAX_KEY_BYTES)} UTF-8 bytes (hash long identifiers yourself)`,
      key,
    );
  }
  return key;
}

/** Checks a duration in ms: a finite integer in [min, max]. */
export function validateDuration(
  value: unknown,
  argument: string,
  { min, max }: { min: number; max: number },
): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || !Number.isInteger(value)) {
    throw new InvalidArgumentError(
      argument,
      `a whole number of milliseconds in [${String(min)}, ${String(max)}]`,
      value,
    );
  }
  if (value < min || value > max) {
    throw new InvalidArgumentError(
      argument,
      `a whole number of milliseconds in [${String(min)}, ${String(max)}]`,
      value,
    );
  }
  return value;
}

/** Checks a wait timeout: a duration or `Infinity` (wait forever). */
export function validateTimeout(value: unknown, argument = 'timeout'): number {
  if (value === Infinity) return Infinity;
  return validateDuration(value, argument, { min: 0, max: 2 ** 31 - 1 });
}

/** Checks an optional AbortSignal. */
export function validateSignal(value: unknown, argument = 'signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) {
    throw new InvalidArgumentError(argument, 'an AbortSignal or undefined', value);
  }
  return value;
}

/** Checks an optional boolean. */
export function validateBoolean(value: unknown, argument: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') {
    throw new InvalidArgumentError(argument, 'true or false', value);
  }
  return value;
}

/** Checks a function argument. */
export function assertFunction(
  value: unknown,
  argument: string,
): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') {
    throw new InvalidArgumentError(argument, 'a function', value);
  }
}

/** Checks that an options argument is a plain object (or undefined). */
export function validateOptionsObject(
  value: unknown,
  argument: string,
  allowed: readonly string[],
): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(argument, 'an options object', value);
  }
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) {
      throw new InvalidArgumentError(
        `${argument}.${name}`,
        `one of the known options (${allowed.join(', ')})`,
        (value as Record<string, unknown>)[name],
      );
    }
  }
  return value as Record<string, unknown>;
}
