/**
 * Observability through `node:diagnostics_channel`. Subscribe by name (see
 * {@link channels}); nothing is built or published while nobody listens.
 *
 * @example
 * import diagnostics from 'node:diagnostics_channel';
 * diagnostics.subscribe('disref:lock:acquired', (message) => {
 *   const { key, waitedMs } = message as LockAcquiredEvent;
 *   waitHistogram.observe({ key }, waitedMs);
 * });
 * @module
 */
import diagnostics from 'node:diagnostics_channel';

export interface LockAcquiredEvent {
  readonly key: string;
  readonly fence: number;
  readonly backend: string;
  /** ms from the call to the grant. */
  readonly waitedMs: number;
}

export interface LockReleasedEvent {
  readonly key: string;
  readonly fence: number;
  readonly backend: string;
  /** ms the lease was held. */
  readonly heldMs: number;
  /** False when the store no longer had the lease (it had run out). */
  readonly wasHeld: boolean;
}

export interface LockExtendedEvent {
  readonly key: string;
  readonly fence: number;
  readonly backend: string;
  readonly ttl: number;
}

export interface LockLostEvent {
  readonly key: string;
  readonly fence: number;
  readonly backend: string;
  readonly reason: string;
}

export interface CompletionEvent {
  readonly resource: string;
  readonly attempt: number;
  readonly backend: string;
}

export interface CompletionFinishedEvent extends CompletionEvent {
  readonly durationMs: number;
}

export interface CompletionFailedEvent extends CompletionEvent {
  readonly durationMs: number;
  readonly error: unknown;
}

/** The channels disref publishes on, by name. */
export const channels = {
  lockAcquired: diagnostics.channel('disref:lock:acquired'),
  lockReleased: diagnostics.channel('disref:lock:released'),
  lockExtended: diagnostics.channel('disref:lock:extended'),
  lockLost: diagnostics.channel('disref:lock:lost'),
  completionStarted: diagnostics.channel('disref:completion:started'),
  completionFinished: diagnostics.channel('disref:completion:finished'),
  completionFailed: diagnostics.channel('disref:completion:failed'),
} as const;

interface EventOf {
  lockAcquired: LockAcquiredEvent;
  lockReleased: LockReleasedEvent;
  lockExtended: LockExtendedEvent;
  lockLost: LockLostEvent;
  completionStarted: CompletionEvent;
  completionFinished: CompletionFinishedEvent;
  completionFailed: CompletionFailedEvent;
}

/** Publishes `make()` on `name` only when someone listens, so it costs nothing otherwise. */
export function publish<Name extends keyof EventOf>(name: Name, make: () => EventOf[Name]): void {
  const channel = channels[name];
  if (channel.hasSubscribers) channel.publish(make());
}
