/**
 * The embedded default backend: a real implementation over an in-process
 * {@link MemoryStore}, passing the same conformance suite as every other
 * backend. It coordinates the `Disref` instances of one Node process only.
 * @module
 */
import type {
  AcquireRequest,
  AcquireResult,
  Backend,
  Capabilities,
  LockState,
  ReleaseListener,
} from '../../backend.js';
import { memoryStore, type MemoryStore } from './memory-store.js';

export class MemoryBackend implements Backend {
  readonly name = 'memory';
  readonly address: string;
  readonly capabilities: Capabilities = {
    notify: true,
    fifo: true,
    sharedLocks: true,
    listKeys: true,
    crossProcess: false,
  };
  /** The shared store; exposed for tests that simulate a store losing its data. */
  readonly store: MemoryStore;
  private readonly namespace: string;

  constructor({ storeName, namespace }: { storeName: string; namespace: string }) {
    this.store = memoryStore(storeName);
    this.namespace = namespace;
    this.address = `memory://${storeName}`;
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return Promise.resolve(this.store.acquire({ ...request, key: this.storeKey(request.key) }));
  }

  extend(key: string, owner: string, ttl: number): Promise<boolean> {
    return Promise.resolve(this.store.extend(this.storeKey(key), owner, ttl));
  }

  release(key: string, owner: string): Promise<boolean> {
    return Promise.resolve(this.store.release(this.storeKey(key), owner));
  }

  leave(key: string, owner: string): Promise<void> {
    this.store.leave(this.storeKey(key), owner);
    return Promise.resolve();
  }

  onRelease(key: string, listener: ReleaseListener): Promise<() => void> {
    return Promise.resolve(this.store.onRelease(this.storeKey(key), listener));
  }

  inspect(key: string): Promise<LockState | null> {
    const state = this.store.inspect(this.storeKey(key));
    return Promise.resolve(state === null ? null : { ...state, key });
  }

  heartbeat(processId: string, ttl: number): Promise<void> {
    this.store.heartbeat(`${this.namespace}\0${processId}`, ttl);
    return Promise.resolve();
  }

  removeProcess(processId: string): Promise<void> {
    this.store.removeProcess(`${this.namespace}\0${processId}`);
    return Promise.resolve();
  }

  close(): Promise<void> {
    // The store outlives this backend: other `Disref` instances share it.
    return Promise.resolve();
  }

  private storeKey(key: string): string {
    // NUL cannot occur in validated keys or namespaces, so this cannot collide.
    return `${this.namespace}\0${key}`;
  }
}
