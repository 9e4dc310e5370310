/**
 * Completions: the "last one out" callbacks of references, and the recovery
 * that finishes the work of dead processes. A completion runs under a claim
 * in the store, kept alive while it runs, so it never runs twice at the same
 * time; if its process dies or the handler throws, the claim lapses and a
 * live process (one with a handler for the resource's kind) retries it with
 * the next attempt number. The guarantee is therefore at-least-once, with
 * exactly-once when nothing fails: handlers should be idempotent.
 * @module
 */
import { kindOf, type Backend, type CompletionClaim } from './backend.js';
import { InvalidArgumentError } from './errors.js';
import { publish } from './events.js';
import { performance } from 'node:perf_hooks';
import type { Session } from './session.js';

/** What a completion handler is told. */
export interface CompletionInfo {
  /** 1 for the first run, then 2, 3... when a failed or interrupted run is retried. */
  readonly attempt: number;
  /** The resource's `timesModified` when the completion started. */
  readonly timesModified: number;
  /** Aborted if the claim on this completion was lost (another process may retry it). */
  readonly signal: AbortSignal;
}

/** Runs when the last reference to a resource is gone. */
export type CompletionHandler = (resource: string, info: CompletionInfo) => Promise<void> | void;

/** Most completions one recovery round takes on, so a heartbeat stays short. */
const RECOVERY_BATCH = 16;

export class Completions {
  readonly #session: Session;
  readonly #backend: Backend;
  readonly #handlers = new Map<string, CompletionHandler>();
  readonly #onError: (error: unknown) => void;
  #recovering: Promise<void> | undefined;

  constructor(session: Session, backend: Backend, onError: (error: unknown) => void) {
    this.#session = session;
    this.#backend = backend;
    this.#onError = onError;
    session.onBeat(() => this.recover());
  }

  /** How long a claim lives without being kept alive: as long as a silent process counts as live. */
  get claimTtl(): number {
    return this.#session.processTtl;
  }

  register(kind: string, handler: CompletionHandler): void {
    if (this.#handlers.has(kind)) {
      throw new InvalidArgumentError(
        'kind',
        `a kind without a handler yet (one handler per kind; "${kind}" has one)`,
        kind,
      );
    }
    this.#handlers.set(kind, handler);
  }

  handlerFor(kind: string): CompletionHandler | undefined {
    return this.#handlers.get(kind);
  }

  /**
   * Runs `handler` under `claim`, then deletes the resource's keys. If the
   * handler throws, the claim is dropped so recovery retries, and the error
   * is rethrown.
   */
  async run(claim: CompletionClaim, handler: CompletionHandler): Promise<void> {
    const lost = new AbortController();
    const interval = Math.max(1, Math.floor(this.claimTtl / 3));
    let timer: NodeJS.Timeout | undefined;
    const keepAlive = (): void => {
      timer = setTimeout(() => {
        this.#backend.extendClaim(claim, this.claimTtl).then(
          (kept) => {
            if (kept) keepAlive();
            else lost.abort(new Error(`completion of ${claim.resource}: claim lost`));
          },
          () => {
            keepAlive(); // unreachable store: retry; the claim lapses if it stays down
          },
        );
      }, interval);
      timer.unref();
    };
    keepAlive();
    const event = { resource: claim.resource, attempt: claim.attempt, backend: this.#backend.name };
    const startedAt = performance.now();
    publish('completionStarted', () => event);
    let timesModified: number;
    try {
      timesModified = await this.#backend.timesModified(claim.resource);
      await handler(claim.resource, { attempt: claim.attempt, timesModified, signal: lost.signal });
    } catch (error) {
      clearTimeout(timer);
      publish('completionFailed', () => ({
        ...event,
        durationMs: performance.now() - startedAt,
        error,
      }));
      await this.#backend.abandonCompletion(claim).catch(() => undefined);
      throw error;
    }
    clearTimeout(timer);
    // What was modified after `timesModified` was read belongs to the next lifetime, if any.
    await this.#backend.finishCompletion(claim, timesModified);
    publish('completionFinished', () => ({ ...event, durationMs: performance.now() - startedAt }));
  }

  /** One recovery round: prune dead processes, then run pending completions we have handlers for. */
  recover(): Promise<void> {
    this.#recovering ??= this.#recoverRound().finally(() => {
      this.#recovering = undefined;
    });
    return this.#recovering;
  }

  async #recoverRound(): Promise<void> {
    try {
      await this.#backend.reapDeadProcesses();
      const kinds = [...this.#handlers.keys()];
      if (kinds.length === 0) return;
      for (let i = 0; i < RECOVERY_BATCH && !this.#session.closed; i++) {
        const claim = await this.#backend.claimPendingCompletion(kinds, this.claimTtl);
        if (claim === null) return;
        const kind = kindOf(claim.resource);
        const handler = this.#handlers.get(kind);
        if (handler === undefined) {
          await this.#backend.abandonCompletion(claim);
          continue;
        }
        await this.run(claim, handler).catch((error: unknown) => {
          this.#onError(
            new Error(
              `completion of ${claim.resource} (attempt ${String(claim.attempt)}) failed; it will be retried`,
              { cause: error },
            ),
          );
        });
      }
    } catch (error) {
      this.#onError(error);
    }
  }
}
