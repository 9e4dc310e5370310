/**
 * The session under every primitive: this process's identity, its heartbeat,
 * the leases it holds, and the difference between closing and being
 * orphaned. Primitives take the session and never run timers of their own
 * for liveness.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Backend } from './backend.js';
import { BackendError } from './errors.js';

/** Something the session releases when it closes (a held lease). */
export interface SessionResource {
  /** Releases in the store; must not throw. */
  releaseOnClose(): Promise<void>;
}

export interface SessionOptions {
  readonly backend: Backend;
  /** Close the backend with the session (false when the user passed the client in). */
  readonly ownsBackend: boolean;
  readonly heartbeatInterval: number;
  readonly processTtl: number;
  /** Longest lease any lock of this session may ask for, in ms. */
  readonly maxTtl: number;
  /** Called when a heartbeat fails; must not throw. */
  readonly onHeartbeatError: (error: unknown) => void;
}

export class Session {
  /** Random identity of this process in the store. */
  readonly id: string = randomUUID();
  readonly backend: Backend;
  readonly heartbeatInterval: number;
  readonly processTtl: number;
  readonly maxTtl: number;
  private readonly ownsBackend: boolean;
  private readonly onHeartbeatError: (error: unknown) => void;
  private readonly resources = new Set<SessionResource>();
  private readonly done = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: SessionOptions) {
    this.backend = options.backend;
    this.ownsBackend = options.ownsBackend;
    this.heartbeatInterval = options.heartbeatInterval;
    this.processTtl = options.processTtl;
    this.maxTtl = options.maxTtl;
    this.onHeartbeatError = options.onHeartbeatError;
    // Every waiting acquire listens to this signal; many waiters are normal.
    setMaxListeners(0, this.done.signal);
  }

  /** Aborted when the session closes. */
  get signal(): AbortSignal {
    return this.done.signal;
  }

  get closed(): boolean {
    return this.done.signal.aborted;
  }

  /** Writes the first heartbeat and keeps beating until `close()`. */
  async start(): Promise<void> {
    await this.backend.heartbeat(this.id, this.processTtl);
    this.scheduleHeartbeat();
  }

  /** Throws when the session is closed; called before every store operation a user starts. */
  assertOpen(): void {
    if (this.closed) {
      throw new BackendError(
        this.backend.address,
        'this Disref instance is closed; create a new one with connect()',
      );
    }
  }

  track(resource: SessionResource): void {
    this.resources.add(resource);
  }

  untrack(resource: SessionResource): void {
    this.resources.delete(resource);
  }

  /** Stops the heartbeat, releases what is still held, and closes the backend if we opened it. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.done.abort(
      new BackendError(this.backend.address, 'this Disref instance was closed while waiting'),
    );
    clearTimeout(this.heartbeatTimer);
    const held = [...this.resources];
    this.resources.clear();
    await Promise.all(held.map((resource) => resource.releaseOnClose()));
    try {
      await this.backend.removeProcess(this.id);
    } catch {
      // The store is unreachable: the heartbeat simply runs out.
    }
    if (this.ownsBackend) await this.backend.close();
  }

  private scheduleHeartbeat(): void {
    if (this.closed) return;
    this.heartbeatTimer = setTimeout(() => {
      this.backend.heartbeat(this.id, this.processTtl).then(
        () => {
          this.scheduleHeartbeat();
        },
        (error: unknown) => {
          this.onHeartbeatError(error);
          this.scheduleHeartbeat();
        },
      );
    }, this.heartbeatInterval);
    this.heartbeatTimer.unref();
  }
}
