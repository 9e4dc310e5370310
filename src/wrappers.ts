/**
 * memcachedlock's API: `lock`, `rlock` and `zlock` as function wrappers and
 * as TypeScript 5 standard method decorators. `getKey` picks the key from the
 * call's arguments (decorators pass `this` first), or returns `DONT_LOCK` to
 * run without a lock. Keys are stored as `functionName:key` (wrappers) or
 * `Class.method:key` (decorators).
 * @module
 */
import { connect, type ConflictOptions, type Disref } from './disref.js';
import { InvalidArgumentError } from './errors.js';
import type { LockOptions } from './options.js';
import { assertFunction, validateKey } from './validate.js';

/** Returned by a `getKey` to run the call without a lock. */
export const DONT_LOCK: unique symbol = Symbol('disref.DONT_LOCK');

/** What a `getKey` returns: the key to lock, or {@link DONT_LOCK}. */
export type KeyOrSkip = string | typeof DONT_LOCK;

/** Options of the `lock` / `rlock` wrappers and decorators. */
export interface WrapperOptions extends LockOptions {
  /** The instance to lock with; default: one built lazily from the environment (`DISREF_URL`). */
  disref?: Disref;
  /** Name used in stored keys instead of the function's own name (needed for anonymous functions). */
  name?: string;
}

/** Options of the `zlock` wrapper and decorator. */
export type ZlockOptions = ConflictOptions & { disref?: Disref; name?: string };

type AsyncMethod<This, Args extends unknown[], Result> = (
  this: This,
  ...args: Args
) => Promise<Result>;

/** A standard (TypeScript 5) decorator for async methods; `Result` is taken from the method. */
export type MethodDecorator<This, Args extends unknown[]> = <Result>(
  target: AsyncMethod<This, Args, Result>,
  context: ClassMethodDecoratorContext<This, AsyncMethod<This, Args, Result>>,
) => AsyncMethod<This, Args, Result>;

let defaultDisref: Promise<Disref> | undefined;

/** The instance wrappers use when none is passed: built once, lazily, from the environment. */
export function defaultInstance(): Promise<Disref> {
  defaultDisref ??= connect().catch((error: unknown) => {
    defaultDisref = undefined;
    throw error;
  });
  return defaultDisref;
}

type Runner = (disref: Disref, key: string, run: () => Promise<unknown>) => Promise<unknown>;

/**
 * Wraps `fn` so each call holds the mutex named by `getKey(...args)`.
 * @example const save = lock((invoice) => invoice.id, saveInvoice, { ttl: 30_000 });
 */
export function lock<Args extends unknown[], Result>(
  getKey: (...args: Args) => KeyOrSkip,
  fn: (...args: Args) => Result,
  options?: WrapperOptions,
): (...args: Args) => Promise<Awaited<Result>>;
/**
 * Decorates an async method so each call holds the mutex named by
 * `getKey(this, ...args)`; stored as `Class.method:key`.
 */
export function lock<This, Args extends unknown[]>(
  getKey: (self: This, ...args: Args) => KeyOrSkip,
  options?: WrapperOptions,
): MethodDecorator<This, Args>;
export function lock(getKey: unknown, fnOrOptions?: unknown, options?: unknown): unknown {
  return wrapOrDecorate('lock', getKey, fnOrOptions, options, (disref, key, run, opts) =>
    disref.lock(key, opts).using(run),
  );
}

/**
 * Like {@link lock}, with a reentrant lock: a call made while the same async
 * call chain already holds the key (recursion) nests instead of deadlocking.
 */
export function rlock<Args extends unknown[], Result>(
  getKey: (...args: Args) => KeyOrSkip,
  fn: (...args: Args) => Result,
  options?: WrapperOptions,
): (...args: Args) => Promise<Awaited<Result>>;
export function rlock<This, Args extends unknown[]>(
  getKey: (self: This, ...args: Args) => KeyOrSkip,
  options?: WrapperOptions,
): MethodDecorator<This, Args>;
export function rlock(getKey: unknown, fnOrOptions?: unknown, options?: unknown): unknown {
  return wrapOrDecorate('rlock', getKey, fnOrOptions, options, (disref, key, run, opts) =>
    disref.rlock(key, opts).using(run),
  );
}

/**
 * Like {@link lock}, with a conflict-retry lock (memcachedlock's `zlock`):
 * runs optimistically; on a conflict (per `isConflict`) takes the lock and
 * re-runs under it, up to `retries` times.
 */
export function zlock<Args extends unknown[], Result>(
  getKey: (...args: Args) => KeyOrSkip,
  fn: (...args: Args) => Result,
  options: ZlockOptions,
): (...args: Args) => Promise<Awaited<Result>>;
export function zlock<This, Args extends unknown[]>(
  getKey: (self: This, ...args: Args) => KeyOrSkip,
  options: ZlockOptions,
): MethodDecorator<This, Args>;
export function zlock(getKey: unknown, fnOrOptions?: unknown, options?: unknown): unknown {
  const zoptions = (typeof fnOrOptions === 'function' ? options : fnOrOptions) as
    ZlockOptions | undefined;
  if (typeof zoptions?.isConflict !== 'function') {
    throw new InvalidArgumentError(
      'options.isConflict',
      'a function telling conflicts from other errors',
      zoptions?.isConflict,
    );
  }
  return wrapOrDecorate('zlock', getKey, fnOrOptions, options, (disref, key, run, opts) =>
    disref.conflictLock(key, opts as unknown as ConflictOptions).run(run),
  );
}

function wrapOrDecorate(
  kind: string,
  getKey: unknown,
  fnOrOptions: unknown,
  maybeOptions: unknown,
  runLocked: (
    disref: Disref,
    key: string,
    run: () => Promise<unknown>,
    options: Record<string, unknown>,
  ) => Promise<unknown>,
): unknown {
  assertFunction(getKey, 'getKey');
  const keyOf = getKey as (...args: unknown[]) => KeyOrSkip;
  const isWrapper = typeof fnOrOptions === 'function';
  const rawOptions: unknown = (isWrapper ? maybeOptions : fnOrOptions) ?? {};
  if (typeof rawOptions !== 'object' || rawOptions === null) {
    throw new InvalidArgumentError('options', `an options object for ${kind}()`, rawOptions);
  }
  const { disref, name, ...lockOptions } = rawOptions as WrapperOptions;
  if (name !== undefined) validateKey(name, 'options.name');
  const run: Runner = (instance, key, call) => runLocked(instance, key, call, lockOptions);
  const instanceFor = (): Promise<Disref> =>
    disref === undefined ? defaultInstance() : Promise.resolve(disref);

  if (isWrapper) {
    const fn = fnOrOptions as (...args: unknown[]) => unknown;
    const prefix = name ?? fn.name;
    if (prefix === '') {
      throw new InvalidArgumentError(
        'options.name',
        `a name for the anonymous function given to ${kind}()`,
        undefined,
      );
    }
    const wrapped = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const key = keyOf(...args);
      if (key === DONT_LOCK) return fn.apply(this, args);
      const lockKey = `${prefix}:${validateKey(key, 'getKey() result')}`;
      return run(await instanceFor(), lockKey, async () => await fn.apply(this, args));
    };
    Object.defineProperty(wrapped, 'name', { value: fn.name });
    return wrapped;
  }

  return (
    target: (...args: unknown[]) => Promise<unknown>,
    context: ClassMethodDecoratorContext,
  ) => {
    // Plain JavaScript can apply a method decorator to a field or accessor.
    const decorated: string = context.kind;
    if (decorated !== 'method') {
      throw new InvalidArgumentError('decorator', `@${kind}() on a method`, decorated);
    }
    const method = String(context.name);
    let prefix = name;
    const replacement = async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const key = keyOf(this, ...args);
      if (key === DONT_LOCK) return target.apply(this, args);
      prefix ??= `${definingClassName(this, replacement, method, context.static)}.${method}`;
      const lockKey = `${prefix}:${validateKey(key, 'getKey() result')}`;
      return run(await instanceFor(), lockKey, async () => target.apply(this, args));
    };
    return replacement;
  };
}

/**
 * The class that defines the decorated method, found by walking the
 * prototype chain, so a subclass instance locks the same key as a base one.
 */
function definingClassName(
  self: unknown,
  method: unknown,
  methodName: string,
  isStatic: boolean,
): string {
  let holder: unknown = isStatic ? self : Object.getPrototypeOf(self);
  while (holder !== null && holder !== undefined) {
    const descriptor = Object.getOwnPropertyDescriptor(holder, methodName);
    if (descriptor?.value === method) {
      const owner = isStatic ? holder : (holder as { constructor?: unknown }).constructor;
      const ownerName = (owner as { name?: unknown } | undefined)?.name;
      if (typeof ownerName === 'string' && ownerName !== '') return ownerName;
      break;
    }
    holder = Object.getPrototypeOf(holder);
  }
  throw new InvalidArgumentError(
    'options.name',
    `a name for the lock key: the class defining ${methodName}() has no name`,
    undefined,
  );
}
