/**
 * The session under every primitive: this process's identity, its heartbeat,
 * the leases it holds, and the difference between closing and being
 * orphaned. Primitives take the session and never run timers of their own
 * for liveness.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { hostname } from 'node:os';
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

/** Where this process runs, shown by `disref status`. */
const PROCESS_INFO = { host: hostname(), pid: process.pid } as const;

/**
 * Runs after each heartbeat (recovery), without delaying the next one; must
 * not throw, and should not start a second round while one is running.
 */
export type BeatListener = () => Promise<void>;

export class Session {
  readonly backend: Backend;
  readonly heartbeatInterval: number;
  readonly processTtl: number;
  readonly maxTtl: number;
  private readonly ownsBackend: boolean;
  private readonly onHeartbeatError: (error: unknown) => void;
  private readonly resources = new Set<SessionResource>();
  private readonly beatListeners = new Set<BeatListener>();
  private currentId: string = randomUUID();
  /** Set while open references should keep this process registered after close(). */
  private keepRegistration: () => boolean = () => false;
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

  /**
   * Random identity of this process in the store. It changes only if the
   * store declared this process dead (its heartbeat ran out, e.g. after a
   * long pause): new work then runs under a new identity.
   */
  get id(): string {
    return this.currentId;
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
    await this.beat(true);
    this.scheduleHeartbeat();
  }

  /** Runs `listener` after every heartbeat (recovery work). */
  onBeat(listener: BeatListener): void {
    this.beatListeners.add(listener);
  }

  /** Close leaves the process registered (to be recovered like a crash) while this says so. */
  keepRegisteredOnCloseWhile(condition: () => boolean): void {
    this.keepRegistration = condition;
  }

  /**
   * Heartbeats; if the store had already declared this process dead, takes
   * a new identity. Resolves whether the identity changed.
   */
  async beat(first = false): Promise<boolean> {
    if (await this.backend.beat(this.currentId, this.processTtl, first, PROCESS_INFO)) return false;
    this.currentId = randomUUID();
    await this.backend.beat(this.currentId, this.processTtl, true, PROCESS_INFO);
    return true;
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
    if (!this.keepRegistration()) {
      try {
        await this.backend.removeProcess(this.id);
      } catch {
        // The store is unreachable: the heartbeat simply runs out.
      }
    }
    if (this.ownsBackend) await this.backend.close();
  }

  private async tick(): Promise<void> {
    try {
      await this.beat();
    } catch (error) {
      this.onHeartbeatError(error);
      return;
    }
    // Recovery runs beside the heartbeat, not in front of the next one: a
    // completion that runs longer than processTtl must not let this process die.
    for (const listener of this.beatListeners) {
      if (this.closed) return;
      listener().catch(this.onHeartbeatError);
    }
  }

  private scheduleHeartbeat(): void {
    if (this.closed) return;
    this.heartbeatTimer = setTimeout(() => {
      void this.tick().finally(() => {
        this.scheduleHeartbeat();
      });
    }, this.heartbeatInterval);
    this.heartbeatTimer.unref();
  }
}
