/**
 * A sharded backend: several independent stores (the shards), each key on
 * one of them. Generic over {@link Backend}, so it can spread any backend;
 * `redis-sharded://` builds it over single-server Redis backends
 * (`redis-sharded.ts`).
 *
 * - Routing: rendezvous (highest random weight) hashing of the caller's key
 *   over the shards' `id`s (`host:port`). Adding a shard moves only the keys
 *   it now wins (about 1/n); removing one moves only its own keys; every
 *   process that lists the same shards, in any order, routes alike. A lock
 *   key and a resource with the same name land on the same shard.
 * - Everything about one lock or one resource runs on its shard, in that
 *   shard's atomic scripts, with that shard's fences and data-loss marker: a
 *   shard that restarts quarantines its own keys only.
 * - Liveness: each shard keeps its own process registry (a resource's script
 *   checks holders against the registry of its own shard), so heartbeats go
 *   to every shard; see `../composite/liveness.ts`. `connect()` needs every
 *   shard, so that a process is known wherever its references may live.
 * - A shard that is down fails the operations on its keys with the
 *   `BackendError` of that shard (naming its address); the other keys keep
 *   working, and recovery goes on over the shards that answer.
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
  ReleaseListener,
  StoreSnapshot,
} from '../../backend.js';
import { InvalidArgumentError } from '../../errors.js';
import { firstFailure, gather } from '../composite/fan-out.js';
import { beatEveryMember, memberAt, type Member } from '../composite/liveness.js';
import { mergeProcesses, quarantineLeftOf, snapshotEveryMember } from '../composite/snapshots.js';
import { Rendezvous } from './rendezvous.js';

/** One shard: a backend, its address for errors, and its identity for hashing. */
export interface Shard extends Member {
  /** The same in every process for the same server (e.g. `host:port`), whatever the list order. */
  readonly id: string;
}

/** Options of {@link ShardedBackend}. */
export interface ShardedBackendOptions {
  /** Short name for errors and status, e.g. `redis-sharded`. */
  readonly name: string;
  /** Address for errors, e.g. `redis-sharded://h1:6379,h2:6379` (no credentials). */
  readonly address: string;
  /** At least one shard, with distinct ids. The backend closes them on `close()`. */
  readonly shards: readonly Shard[];
}

export class ShardedBackend implements Backend {
  readonly name: string;
  readonly address: string;
  /** What every shard can do. */
  readonly capabilities: Capabilities;
  private readonly shards: readonly Shard[];
  private readonly ring: Rendezvous<Shard>;

  constructor(options: ShardedBackendOptions) {
    const { shards } = options;
    const ids = new Set(shards.map((shard) => shard.id));
    if (shards.length === 0 || ids.size !== shards.length) {
      throw new InvalidArgumentError(
        'shards',
        'at least one shard, each server listed once',
        shards.map((shard) => shard.id).join(','),
      );
    }
    this.name = options.name;
    this.address = options.address;
    this.shards = shards;
    this.ring = new Rendezvous(shards, (shard) => shard.id);
    const all = (feature: keyof Capabilities): boolean =>
      shards.every((shard) => shard.backend.capabilities[feature]);
    this.capabilities = {
      notify: all('notify'),
      fifo: all('fifo'),
      sharedLocks: all('sharedLocks'),
      listKeys: all('listKeys'),
      crossProcess: all('crossProcess'),
      handOff: all('handOff'),
    };
  }

  /** The shard that holds `key` (a lock key or a resource name). */
  shardFor(key: string): Shard {
    return this.ring.pick(key);
  }

  acquire(request: AcquireRequest): Promise<AcquireResult> {
    return this.on(request.key).acquire(request);
  }

  extend(key: string, owner: string, ttl: number): Promise<boolean> {
    return this.on(key).extend(key, owner, ttl);
  }

  release(key: string, owner: string): Promise<boolean> {
    return this.on(key).release(key, owner);
  }

  leave(key: string, owner: string): Promise<void> {
    return this.on(key).leave(key, owner);
  }

  onRelease(key: string, listener: ReleaseListener, owner?: string): Promise<() => void> {
    return this.on(key).onRelease(key, listener, owner);
  }

  isListening(key: string, owner?: string): boolean {
    return this.on(key).isListening?.(key, owner) === true;
  }

  inspect(key: string): Promise<LockState | null> {
    return this.on(key).inspect(key);
  }

  /** Every shard's locks and references; processes merged; unreachable shards named in `incomplete`. */
  async snapshot(prefix = ''): Promise<StoreSnapshot> {
    const { taken, incomplete } = await snapshotEveryMember(this.shards, this.address, prefix);
    return {
      locks: taken.flatMap(({ snapshot }) => snapshot.locks),
      references: taken.flatMap(({ snapshot }) => snapshot.references),
      processes: mergeProcesses(taken.map(({ snapshot }) => snapshot.processes)),
      incomplete,
      quarantineLeft: quarantineLeftOf(taken),
    };
  }

  /**
   * Beats on every shard. The first beat needs every shard; later ones
   * resolve as long as one shard recorded them (a shard that is down fails
   * the operations on its keys instead, and if it stays down past the
   * process ttl, it refuses the next beat and the process takes a new
   * identity).
   */
  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    return beatEveryMember(
      this.shards,
      this.address,
      { processId, ttl, first, info },
      { required: first ? this.shards.length : 1 },
    );
  }

  async removeProcess(processId: string): Promise<void> {
    const { outcomes } = await gather(this.shards.length, (index) =>
      memberAt(this.shards, index).backend.removeProcess(processId),
    );
    const failed = firstFailure(outcomes);
    if (failed !== undefined) throw failed.error;
  }

  addReference(resource: string, processId: string): Promise<boolean> {
    return this.on(resource).addReference(resource, processId);
  }

  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    return this.on(resource).removeReference(resource, processId, claimTtl);
  }

  countReferences(resource: string): Promise<number> {
    return this.on(resource).countReferences(resource);
  }

  incrementTimesModified(resource: string, by: number): Promise<number> {
    return this.on(resource).incrementTimesModified(resource, by);
  }

  timesModified(resource: string): Promise<number> {
    return this.on(resource).timesModified(resource);
  }

  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return this.on(claim.resource).extendClaim(claim, ttl);
  }

  finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    return this.on(claim.resource).finishCompletion(claim, seenModified);
  }

  abandonCompletion(claim: CompletionClaim): Promise<void> {
    return this.on(claim.resource).abandonCompletion(claim);
  }

  /** Reaps on every shard; fails only when no shard answers, so one outage does not stop recovery elsewhere. */
  async reapDeadProcesses(): Promise<number> {
    const { outcomes } = await gather(this.shards.length, (index) =>
      memberAt(this.shards, index).backend.reapDeadProcesses(),
    );
    let reaped = 0;
    for (const outcome of outcomes) if (outcome?.ok === true) reaped += outcome.value;
    const failed = firstFailure(outcomes);
    if (failed !== undefined && outcomes.every((outcome) => outcome?.ok === false)) {
      throw failed.error;
    }
    return reaped;
  }

  /**
   * Claims a pending completion on one of the shards, starting at a random
   * one so that recovering processes spread over the shards. Fails only
   * when no shard answers.
   */
  async claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    const start = Math.floor(Math.random() * this.shards.length);
    let firstError: unknown;
    let answered = false;
    for (let step = 0; step < this.shards.length; step++) {
      const shard = memberAt(this.shards, (start + step) % this.shards.length);
      try {
        const claim = await shard.backend.claimPendingCompletion(kinds, claimTtl);
        answered = true;
        if (claim !== null) return claim;
      } catch (error) {
        firstError ??= error;
      }
    }
    if (!answered) throw firstError;
    return null;
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((shard) => shard.backend.close().catch(() => undefined)));
  }

  /** The backend of the shard that holds `key`. */
  private on(key: string): Backend {
    return this.shardFor(key).backend;
  }
}
