/**
 * The memcached backend: locks over one memcached server or a pool, with
 * memcached's own atomic primitives and nothing else.
 *
 * - A lock is one item (see `lock-record.ts`), created with `add`
 *   (`ms ... ME`) and changed only by compare-and-swap (`mg` with CAS, then
 *   `ms ... C<cas>`), in loops of at most {@link MAX_CAS_ATTEMPTS} tries.
 *   Acquire takes two round trips: read (lock record, fence, data-loss
 *   marker, pipelined), then write + re-read the marker.
 * - Fences come from a counter item per key (`ma`, created on first use with
 *   the value clock_ms * 1000, like the memory store's max(last + 1,
 *   now_ms * 1000)), so they keep growing after memcached lost the counter,
 *   and are kept ordered with grants by the record's last fence.
 * - Several servers: a key lives on the server that rendezvous hashing picks
 *   (`keys.ts`). When that server is down, operations on the key fail with a
 *   `BackendError` naming it, within the request timeout. The key is never
 *   moved to another server: a holder on the first server would still hold
 *   it when that server came back, next to a holder granted on the second.
 * - Lost data (restart, flush, eviction) is detected and quarantined by
 *   `epoch-guard.ts`; a dedicated memcached (or `-M`) is advised for locks.
 * - No notifications: waiters in other processes poll (at `retryInterval`,
 *   with jitter); waiters in this process are woken at once by local
 *   releases (`local-releases.ts`). No fair queue, no key listing.
 * - Reference counting, process heartbeats and recovery live in
 *   `memcached-references.ts` (items, registries, ordering of steps).
 *
 * Time bounds: holder expiry inside a record is the holder's wall clock plus
 * the ttl; other processes wait {@link CLOCK_TOLERANCE} ms more before they
 * take it over (see `lock-record.ts`). Items carry memcached expiries of at
 * least the lease (rounded up to whole seconds, plus one), so memcached
 * never cuts a lease short; a lock neither released nor extended blocks
 * others for at most ttl + CLOCK_TOLERANCE while clocks agree.
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
  ReferenceOperations,
  ReleaseListener,
  StoreSnapshot,
} from '../../backend.js';
import { longestQuarantine } from '../../backend.js';
import type { HostPort } from '../../config.js';
import { BackendError, InvalidArgumentError } from '../../errors.js';
import { casPause, MAX_CAS_ATTEMPTS } from './cas.js';
import { MemcachedClient, type Replies, type ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import { EpochGuard } from './epoch-guard.js';
import { itemName } from './keys.js';
import {
  CLOCK_TOLERANCE,
  decodeRecord,
  EMPTY_RECORD,
  encodeRecord,
  lastExpiry,
  planAcquire,
  planExtend,
  planLeave,
  planRelease,
  prune,
  type LockRecord,
} from './lock-record.js';
import { listenLocally, releasedLocally } from './local-releases.js';
import { MemcachedReferences } from './memcached-references.js';
import { exptimeFor, type MetaRequest, type MetaResponse } from './protocol.js';

export { CLOCK_TOLERANCE };

/** Options of {@link MemcachedBackend}. */
export interface MemcachedBackendOptions {
  /** The pool (`memcached://h1:p1,h2:p2`); every process must list the same servers. */
  readonly servers: readonly HostPort[];
  /** Prefix of every item. */
  readonly namespace: string;
  /**
   * Longest lease any process may hold, in ms: after a server lost its
   * data, nothing is granted on it for this long. Every process sharing a
   * namespace should use the same value.
   */
  readonly maxTtl: number;
  /**
   * Connections per server.
   * @default 2
   */
  readonly connectionsPerServer?: number;
  /**
   * ms to wait for a reply before the operation fails with `BackendError`.
   * @default 2_000
   */
  readonly requestTimeout?: number;
  /**
   * ms to wait for a TCP connection.
   * @default 1_000
   */
  readonly connectTimeout?: number;
}

/**
 * Free lock records (their last fence) and fence counters stay this long at
 * least, so a grant computed from an old read can never slip in under a
 * lower fence than one handed out since.
 */
const MIN_RETENTION = 3_600_000;
/** Wait suggested after losing every CAS race of one attempt. */
const CONTENDED_RETRY = 5;

interface LockItems {
  readonly key: string;
  readonly server: ServerPool;
  readonly record: string;
  readonly fence: string;
}

/** What `snapshot()` cannot show, since memcached cannot list its keys. */
const SNAPSHOT_GAPS =
  'memcached cannot list keys: shown are the processes in the namespace registry, the resources they hold or that await completion, and the locks of those resources; other locks, and resources with no holder that are not completing, are not shown';

export class MemcachedBackend implements Backend, ReferenceOperations {
  readonly name = 'memcached';
  readonly address: string;
  readonly capabilities: Capabilities = {
    notify: false,
    fifo: false,
    sharedLocks: true,
    listKeys: false,
    crossProcess: true,
    handOff: false,
  };
  /** The client, for tools and tests (stats, flush). */
  readonly client: MemcachedClient;
  private readonly namespace: string;
  private readonly guard: EpochGuard;
  /** ms that free records and fence counters are kept. */
  private readonly retention: number;
  private readonly references: MemcachedReferences;

  constructor(options: MemcachedBackendOptions) {
    this.client = new MemcachedClient({
      servers: options.servers,
      ...(options.connectionsPerServer === undefined
        ? {}
        : { connectionsPerServer: options.connectionsPerServer }),
      ...(options.requestTimeout === undefined ? {} : { requestTimeout: options.requestTimeout }),
      ...(options.connectTimeout === undefined ? {} : { connectTimeout: options.connectTimeout }),
    });
    this.namespace = options.namespace;
    this.address = `memcached://${this.client.servers.map((server) => server.id).join(',')}`;
    this.guard = new EpochGuard(this.client, options.namespace, options.maxTtl);
    this.retention = Math.max(MIN_RETENTION, 2 * options.maxTtl);
    this.references = new MemcachedReferences(this.client, options.namespace);
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    if (request.fair) {
      throw new InvalidArgumentError(
        'fair',
        'false: the memcached backend cannot queue waiters in arrival order',
        true,
      );
    }
    const lock = this.locate(request.key);
    const fenceSeconds = String(exptimeFor(this.retention));
    return this.run(lock, async () => {
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        await casPause(attempt);
        const [marker, quarantine, item, counter] = await this.read(lock, [
          ...this.guard.probes,
          { command: 'mg', key: lock.record, flags: ['v', 'c'] },
          // Auto-created from the clock, so a counter memcached lost restarts higher.
          {
            command: 'ma',
            key: lock.fence,
            flags: ['v', `N${fenceSeconds}`, `J${String(Date.now() * 1000)}`, `T${fenceSeconds}`],
          },
        ]);
        const gate = await this.guard.admit(lock.server, marker, quarantine);
        if (!gate.open) return { granted: false, retryAfter: gate.retryAfter, quarantined: true };
        const now = Date.now();
        const plan = planAcquire(
          this.decode(lock, item),
          {
            owner: request.owner,
            mode: request.mode,
            ttl: request.ttl,
            wait: request.wait,
            waiterTtl: request.waiterTtl,
            drawnFence: this.fenceOf(lock, counter),
          },
          now,
        );
        if (!plan.granted) {
          // A lost race only delays the registration to the next attempt.
          if (plan.record !== undefined) {
            await this.read(lock, [this.write(lock, item, plan.record, now)]);
          }
          return { granted: false, retryAfter: plan.retryAfter };
        }
        const [written, markerAfter, quarantineAfter] = await this.read(lock, [
          this.write(lock, item, plan.record, now),
          ...this.guard.probes,
        ]);
        if (written.status !== 'HD') continue;
        if (!this.guard.confirms(lock.server, gate.epoch, markerAfter, quarantineAfter)) {
          // The server may have lost its data around the write: take the grant back.
          await this.releaseOwner(lock, request.owner);
          return { granted: false, retryAfter: 1, quarantined: true };
        }
        return { granted: true, fence: plan.fence };
      }
      return { granted: false, retryAfter: CONTENDED_RETRY };
    });
  }

  extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const lock = this.locate(key);
    return this.run(lock, () =>
      this.update(lock, (record, now) => planExtend(record, owner, ttl, now)).then(
        (result) => result !== undefined,
      ),
    );
  }

  release(key: string, owner: string): Promise<boolean> {
    const lock = this.locate(key);
    return this.run(lock, () => this.releaseOwner(lock, owner));
  }

  leave(key: string, owner: string): Promise<void> {
    const lock = this.locate(key);
    return this.run(lock, async () => {
      const left = await this.update(lock, (record, now) => planLeave(record, owner, now));
      // A writer that stops waiting may let readers in.
      if (left !== undefined) releasedLocally(lock.server.id, lock.record);
    });
  }

  onRelease(key: string, listener: ReleaseListener): Promise<() => void> {
    const lock = this.locate(key);
    return Promise.resolve(listenLocally(lock.server.id, lock.record, listener));
  }

  inspect(key: string): Promise<LockState | null> {
    const lock = this.locate(key);
    return this.run(lock, async () => {
      const [item] = await this.read(lock, [{ command: 'mg', key: lock.record, flags: ['v'] }]);
      const now = Date.now();
      const record = prune(this.decode(lock, item), now);
      if (record.holders.length === 0 && record.pendingWriters.length === 0) return null;
      return {
        key,
        holders: record.holders.map((holder) => ({
          owner: holder.owner,
          mode: holder.mode,
          fence: holder.fence,
          ttlLeft: Math.max(0, Math.round(holder.expiresAt - now)),
        })),
        waiters: record.pendingWriters.length,
      };
    });
  }

  async removeProcess(processId: string): Promise<void> {
    await this.wrap(undefined, () => this.references.removeProcess(processId));
  }

  async beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    const live = await this.wrap(undefined, () =>
      this.references.beat(processId, ttl, first, info),
    );
    // Notice lost data even while this process grants nothing.
    await this.guard.sweep();
    return live;
  }

  addReference(resource: string, processId: string): Promise<boolean> {
    return this.wrap(resource, () => this.references.addReference(resource, processId));
  }

  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    return this.wrap(resource, () =>
      this.references.removeReference(resource, processId, claimTtl),
    );
  }

  countReferences(resource: string): Promise<number> {
    return this.wrap(resource, () => this.references.countReferences(resource));
  }

  incrementTimesModified(resource: string, by: number): Promise<number> {
    return this.wrap(resource, () => this.references.incrementTimesModified(resource, by));
  }

  timesModified(resource: string): Promise<number> {
    return this.wrap(resource, () => this.references.timesModified(resource));
  }

  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return this.wrap(claim.resource, () => this.references.extendClaim(claim, ttl));
  }

  finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    return this.wrap(claim.resource, () => this.references.finishCompletion(claim, seenModified));
  }

  abandonCompletion(claim: CompletionClaim): Promise<void> {
    return this.wrap(claim.resource, () => this.references.abandonCompletion(claim));
  }

  reapDeadProcesses(): Promise<number> {
    return this.wrap(undefined, () => this.references.reapDeadProcesses());
  }

  claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    return this.wrap(undefined, () => this.references.claimPendingCompletion(kinds, claimTtl));
  }

  /**
   * Processes and references from the namespace registries, and the locks
   * of the resources found there; `incomplete` says what memcached cannot
   * list.
   */
  async snapshot(prefix = ''): Promise<StoreSnapshot> {
    const registered = await this.wrap(undefined, () => this.references.snapshot());
    const { processes } = registered;
    const references = registered.references.filter(({ resource }) => resource.startsWith(prefix));
    const locks = await Promise.all(references.map(({ resource }) => this.inspect(resource)));
    // Each server quarantines the keys it serves: the longest holds some grants back. A server
    // that does not answer is named, rather than failing the whole listing.
    const unanswered: string[] = [];
    const quarantines = await Promise.all(
      this.client.servers.map((server) =>
        this.guard.quarantineLeft(server).catch(() => {
          unanswered.push(server.address);
          return undefined;
        }),
      ),
    );
    return {
      locks: locks.filter((lock): lock is LockState => lock !== null),
      references,
      processes,
      incomplete:
        unanswered.length === 0
          ? SNAPSHOT_GAPS
          : `${SNAPSHOT_GAPS}; the data-loss quarantine of ${unanswered.join(', ')} could not be read`,
      quarantineLeft: longestQuarantine(quarantines),
    };
  }

  /** `memcached://host:port` of the server of the namespace's process and pending registries. */
  get registryAddress(): string {
    return this.references.registryServer.address;
  }

  /** `memcached://host:port` of the server that holds the lock on `key` (its only home). */
  serverAddressOf(key: string): string {
    return this.locate(key).server.address;
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }

  private locate(key: string): LockItems {
    return {
      key,
      server: this.client.serverFor(`${this.namespace}:${key}`),
      record: itemName(this.namespace, 'l', key),
      fence: itemName(this.namespace, 'f', key),
    };
  }

  /** Removes `owner` from the lock; resolves whether its lease was still running. */
  private async releaseOwner(lock: LockItems, owner: string): Promise<boolean> {
    let wasHeld = false;
    const result = await this.update(lock, (record, now) => {
      const plan = planRelease(record, owner, now);
      wasHeld = plan?.wasHeld ?? false;
      return plan?.record;
    });
    if (result === undefined) return false;
    releasedLocally(lock.server.id, lock.record);
    return wasHeld;
  }

  /**
   * The CAS loop: reads the record, applies `change` (undefined: nothing to
   * do), writes it back if nobody changed it meanwhile. Resolves the record
   * written, or undefined when there was nothing to change.
   */
  private async update(
    lock: LockItems,
    change: (record: LockRecord, now: number) => LockRecord | undefined,
  ): Promise<LockRecord | undefined> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const [item] = await this.read(lock, [
        { command: 'mg', key: lock.record, flags: ['v', 'c'] },
      ]);
      if (item.status === 'EN') return undefined;
      const now = Date.now();
      const next = change(this.decode(lock, item), now);
      if (next === undefined) return undefined;
      const [written] = await this.read(lock, [this.write(lock, item, next, now)]);
      if (written.status === 'HD') return next;
      if (written.status === 'NF') return undefined;
    }
    throw new MemcachedServerError(
      lock.server.address,
      `lock record still changing after ${String(MAX_CAS_ATTEMPTS)} compare-and-swap attempts; retry`,
    );
  }

  /** `ms` of `record`: `add` where there was no item, else compare-and-swap against `item`. */
  private write(lock: LockItems, item: MetaResponse, record: LockRecord, now: number): MetaRequest {
    const keep = Math.max(this.retention, lastExpiry(record) - now);
    const flags = [`T${String(exptimeFor(keep))}`];
    flags.push(item.status === 'VA' ? `C${item.flags.get('c') ?? '0'}` : 'ME');
    return { command: 'ms', key: lock.record, value: encodeRecord(record), flags };
  }

  /** Sends meta requests to the lock's server, pipelined; one reply per request. */
  private read<const R extends readonly MetaRequest[]>(
    lock: LockItems,
    requests: R,
  ): Promise<Replies<R>> {
    return this.client.meta(lock.server, requests);
  }

  private decode(lock: LockItems, item: MetaResponse | undefined): LockRecord {
    if (item?.status !== 'VA' || item.value === undefined) return EMPTY_RECORD;
    try {
      return decodeRecord(item.value);
    } catch (error) {
      throw new MemcachedServerError(
        lock.server.address,
        `item ${lock.record} is not a disref lock record (${String(error)}); another application may use this namespace`,
        { cause: error },
      );
    }
  }

  private fenceOf(lock: LockItems, counter: MetaResponse | undefined): number {
    const fence = Number(counter?.value?.toString('latin1'));
    if (!Number.isSafeInteger(fence) || fence <= 0) {
      throw new MemcachedServerError(
        lock.server.address,
        `fence counter ${lock.fence} is unusable (not a fence disref wrote): delete it, or give disref a namespace of its own`,
      );
    }
    return fence;
  }

  /** Runs a lock operation; a server failure becomes a `BackendError` naming the server and key. */
  private run<T>(lock: { readonly key: string }, operation: () => Promise<T>): Promise<T> {
    return this.wrap(lock.key, operation);
  }

  /** Runs a store operation; a server failure becomes a `BackendError` naming the server (and key). */
  private async wrap<T>(key: string | undefined, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof MemcachedServerError)) throw error;
      throw new BackendError(error.address, error.reason, {
        cause: error,
        ...(key === undefined ? {} : { key }),
      });
    }
  }
}
