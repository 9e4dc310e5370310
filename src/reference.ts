/**
 * `disref.reference(resource)`: this process's reference to a resource that
 * many processes hold at once. It lives as long as the process heartbeats;
 * the last `dereference()` runs the resource's completion once.
 * @module
 */
import { kindOf, type Backend } from './backend.js';
import type { CompletionHandler, Completions } from './completion.js';
import { InvalidArgumentError } from './errors.js';
import type { Lock } from './locks/lock.js';
import type { LockOptions } from './options.js';
import type { Session } from './session.js';
import { validateDuration } from './validate.js';

/** What a Reference needs from the Disref that made it. */
export interface ReferenceContext {
  readonly session: Session;
  readonly backend: Backend;
  readonly completions: Completions;
  readonly lock: (key: string, options?: LockOptions) => Lock;
  /** Called once the reference is gone (dereferenced or found stale). */
  readonly forget: (reference: Reference) => void;
}

export class Reference {
  /** The resource, e.g. `record:42`. */
  readonly resource: string;
  /** The text before the first `:`; selects the `onComplete` handler. */
  readonly kind: string;
  readonly #context: ReferenceContext;
  /** The process identity the reference was taken under. */
  readonly #processId: string;
  #dereferenced = false;

  /** @internal Made by `disref.reference()`. */
  constructor(context: ReferenceContext, resource: string, processId: string) {
    this.#context = context;
    this.resource = resource;
    this.kind = kindOf(resource);
    this.#processId = processId;
  }

  /**
   * False once dereferenced, or when the store declared this process dead
   * since the reference was taken (the reference was then pruned).
   */
  get held(): boolean {
    return !this.#dereferenced && this.#processId === this.#context.session.id;
  }

  /** Live holders of the resource across all processes (dead ones pruned). */
  async count(): Promise<number> {
    this.#context.session.assertOpen();
    return this.#context.backend.countReferences(this.resource);
  }

  /** Adds `by` (default 1) to the resource's modification counter; resolves the new value. */
  async incrementTimesModified(by = 1): Promise<number> {
    const amount = validateDuration(by, 'by', { min: 1, max: Number.MAX_SAFE_INTEGER });
    this.#assertHeld('incrementTimesModified');
    return this.#context.backend.incrementTimesModified(this.resource, amount);
  }

  /** How many times processes modified the resource in its current lifetime. */
  async timesModified(): Promise<number> {
    this.#context.session.assertOpen();
    return this.#context.backend.timesModified(this.resource);
  }

  /** The resource's exclusive lock (the same lock as `disref.lock(resource)`). */
  lock(options?: LockOptions): Lock {
    return this.#context.lock(this.resource, options);
  }

  /**
   * Removes this process's reference, atomically. If it was the last live
   * one, runs the completion (`callback` if given, else the handler
   * registered for the kind) and then deletes the resource's keys. Resolves
   * whether this call was the last. If the completion throws, it rejects
   * with that error and recovery retries the completion later; if no
   * handler is known here, a live process with one completes it.
   */
  async dereference(callback?: CompletionHandler): Promise<boolean> {
    if (callback !== undefined && typeof callback !== 'function') {
      throw new InvalidArgumentError('callback', 'a function or undefined', callback);
    }
    const { session, backend, completions } = this.#context;
    session.assertOpen();
    if (this.#dereferenced) return false;
    this.#dereferenced = true;
    this.#context.forget(this);
    if (this.#processId !== session.id) return false; // pruned when this process was declared dead
    const { removed, claim } = await backend.removeReference(
      this.resource,
      this.#processId,
      completions.claimTtl,
    );
    if (!removed || claim === null) return false;
    const handler = callback ?? completions.handlerFor(this.kind);
    if (handler === undefined) {
      // Leave it pending: a process with a handler for this kind completes it.
      await backend.abandonCompletion(claim);
      process.emitWarning(
        `disref: ${this.resource} has no completion handler in this process; ` +
          `register one with disref.onComplete('${this.kind}', handler)`,
        'DisrefWarning',
      );
      return true;
    }
    await completions.run(claim, handler);
    return true;
  }

  #assertHeld(verb: string): void {
    this.#context.session.assertOpen();
    if (!this.held) {
      throw new InvalidArgumentError(
        'reference',
        `a held reference for ${verb}(); take a new one with disref.reference('${this.resource}')`,
        this.resource,
      );
    }
  }
}
