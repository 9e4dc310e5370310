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
  CompletionClaim,
  LockState,
  ProcessInfo,
  StoreSnapshot,
  ReferenceOperations,
  ReleaseListener,
} from '../../backend.js';
import type { ReferenceSpace } from './memory-references.js';
import { memoryStore, type MemoryStore } from './memory-store.js';

export class MemoryBackend implements Backend, ReferenceOperations {
  readonly name = 'memory';
  readonly address: string;
  readonly capabilities: Capabilities = {
    notify: true,
    fifo: true,
    sharedLocks: true,
    listKeys: true,
    crossProcess: false,
    handOff: true,
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

  removeProcess(processId: string): Promise<void> {
    this.references.remove(processId);
    return Promise.resolve();
  }

  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    return Promise.resolve(this.references.beat(processId, ttl, first, info));
  }

  snapshot(prefix = ''): Promise<StoreSnapshot> {
    return Promise.resolve({
      locks: this.store.locksUnder(this.storeKey(''), prefix),
      ...this.references.snapshot(prefix),
      incomplete: undefined,
      quarantineLeft: this.store.quarantineLeft(),
    });
  }

  addReference(resource: string, processId: string): Promise<boolean> {
    return Promise.resolve(this.references.addReference(resource, processId));
  }

  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    return Promise.resolve(this.references.removeReference(resource, processId, claimTtl));
  }

  countReferences(resource: string): Promise<number> {
    return Promise.resolve(this.references.countReferences(resource));
  }

  incrementTimesModified(resource: string, by: number): Promise<number> {
    return Promise.resolve(this.references.incrementTimesModified(resource, by));
  }

  timesModified(resource: string): Promise<number> {
    return Promise.resolve(this.references.timesModified(resource));
  }

  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return Promise.resolve(this.references.extendClaim(claim, ttl));
  }

  finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    return Promise.resolve(this.references.finishCompletion(claim, seenModified));
  }

  abandonCompletion(claim: CompletionClaim): Promise<void> {
    this.references.abandonCompletion(claim);
    return Promise.resolve();
  }

  reapDeadProcesses(): Promise<number> {
    return Promise.resolve(this.references.reapDeadProcesses());
  }

  claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    return Promise.resolve(this.references.claimPendingCompletion(kinds, claimTtl));
  }

  private get references(): ReferenceSpace {
    return this.store.references(this.namespace);
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
