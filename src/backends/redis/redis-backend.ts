/**
 * The Redis backend: every atomic operation is one Lua script (see
 * `scripts/`), so acquire, release and an uncontended extend each take one
 * round trip; waiters are woken by pub/sub. Reference counting lives in
 * `redis-references.ts`, the `status` snapshot in `redis-snapshot.ts`.
 * Works over an ioredis client it creates from a `redis://` / `rediss://`
 * URL, or over an ioredis or node-redis client passed in (which it never
 * closes).
 *
 * The same class serves Redis Cluster (`redis-cluster://`, or an ioredis
 * `Cluster` passed in), with three differences, all because a Cluster
 * script may only touch keys of one hash slot: acquire checks the data-loss
 * marker of the lock's slot instead of the namespace marker
 * (`includes/slot-marker.lua`); reference operations run as a registry step
 * and a resource step (`redis-cluster-references.ts`); wake-ups use sharded
 * pub/sub on Redis 7+ (`cluster-client.ts`). Locks stay one round trip.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
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
import type { StoreAddress } from '../../config.js';
import { DeadlineQueue } from '../../deadlines.js';
import { BackendError } from '../../errors.js';
import {
  clientNameFor,
  connectionForClient,
  createIoredisConnection,
  describeAddress,
  describeFailure,
  isUnreadableData,
  withDeadline,
  type RedisConnection,
} from './client.js';
import {
  clusterClientAddress,
  connectionForCluster,
  createClusterConnection,
  describeClusterAddress,
  isIoredisCluster,
} from './cluster-client.js';
import {
  grantChannel,
  lockKeys,
  markerKey,
  processesKey,
  processKey,
  slotMarkerKey,
} from './keys.js';
import { ScriptBatcher } from './batch.js';
import { RedisClusterReferences } from './redis-cluster-references.js';
import { RedisReferences, type ScriptRunner } from './redis-references.js';
import { parseLockState, takeSnapshot } from './redis-snapshot.js';
import {
  luaScripts,
  runScript,
  scriptVariant,
  type LuaScript,
  type PublishCommand,
} from './scripts.js';
import { keySlot } from './slots.js';
import { Wakeups } from './wakeups.js';

/** Options of {@link RedisBackend}. */
export interface RedisBackendOptions {
  /**
   * A parsed `redis://`, `rediss://` or `redis-cluster://` URL (disref
   * creates and closes the client), or a client passed in (an ioredis
   * `Redis` or `Cluster`, or a node-redis client).
   */
  readonly server:
    | Extract<StoreAddress, { scheme: 'redis' | 'rediss' | 'redis-cluster' }>
    | { readonly client: unknown };
  /** Prefix of every key. */
  readonly namespace: string;
  /**
   * Longest lease any process may hold, in ms: after the store lost its
   * data, nothing is granted for this long. Every process sharing a
   * namespace should use the same value.
   */
  readonly maxTtl: number;
  /**
   * Longest wait for one store operation, in ms, before it fails with
   * `BackendError` (for clients passed in, whose own timeouts are unknown).
   * @default 5_000
   */
  readonly operationTimeout?: number;
  /**
   * Redis Cluster only: how scripts wake waiters. SPUBLISH (sharded pub/sub,
   * on the node of the lock's slot) needs Redis 7 on every primary; PUBLISH
   * is broadcast by the cluster to every node.
   * @default detected at connect: SPUBLISH when every primary runs Redis 7+, else PUBLISH
   */
  readonly clusterPublish?: PublishCommand;
}

/** Default bound on one operation; clients disref creates time out sooner (3 s). */
const OPERATION_TIMEOUT = 5_000;
/** The fence key outlives the lock by this many `maxTtl`s (at least 10 minutes). */
const FENCE_TTL_FACTOR = 10;
const MIN_FENCE_TTL = 600_000;

/** How `beat-3.lua` treats the process: see its header. */
type BeatMode = 'first' | 'next' | 'heartbeat';

export class RedisBackend implements Backend, ReferenceOperations {
  /** `redis`, or `redis-cluster` for Redis Cluster. */
  readonly name: 'redis' | 'redis-cluster';
  readonly address: string;
  readonly capabilities: Capabilities = {
    notify: true,
    fifo: true,
    sharedLocks: true,
    listKeys: true,
    crossProcess: true,
    handOff: true,
  };
  private readonly namespace: string;
  private readonly maxTtl: number;
  private readonly fenceTtl: number;
  private readonly operationTimeout: number;
  private readonly connecting: () => Promise<RedisConnection>;
  private connection: Promise<RedisConnection> | undefined;
  /** The connection once made, for error messages. */
  private connected: RedisConnection | undefined;
  /** Made with the first subscription, over the connection's subscriber. */
  private wakeups: Wakeups | undefined;
  private readonly scripts = luaScripts();
  /**
   * The lock operations that are sent through {@link batcher} (batch-n.lua);
   * none on Redis Cluster, where one batch's keys would span slots.
   */
  private readonly batched: ReadonlySet<LuaScript>;
  /** Bounds every store operation (made with the connection, whose timeout it takes). */
  private deadlines: DeadlineQueue | undefined;
  /** Batches the lock operations of one turn of the event loop (batch.ts), per connection. */
  private batcher: { connection: RedisConnection; batcher: ScriptBatcher } | undefined;
  private readonly references: RedisReferences | RedisClusterReferences;
  /** The namespace epoch this backend saw last ('' before the first reply); see includes/marker.lua. */
  private epoch = '';
  /** Redis Cluster: the epoch of each slot marker this backend saw (includes/slot-marker.lua). */
  private readonly slotEpochs = new Map<number, string>();
  /** Redis Cluster: the namespace marker's `created`, from the last heartbeat ('0': unknown). */
  private namespaceCreated = '0';
  private closed = false;

  constructor(options: RedisBackendOptions) {
    this.namespace = options.namespace;
    this.maxTtl = options.maxTtl;
    this.fenceTtl = Math.max(FENCE_TTL_FACTOR * options.maxTtl, MIN_FENCE_TTL);
    this.operationTimeout = options.operationTimeout ?? OPERATION_TIMEOUT;
    const { server } = options;
    if ('client' in server) {
      const { client } = server;
      if (isIoredisCluster(client)) {
        this.name = 'redis-cluster';
        this.address = clusterClientAddress(client);
        this.connecting = () => connectionForCluster(client, options.clusterPublish);
      } else {
        const { connection, address } = connectionForClient(client, 'options.redis');
        this.name = 'redis';
        this.address = address;
        this.connecting = () => Promise.resolve(connection);
      }
    } else if (server.scheme === 'redis-cluster') {
      this.name = 'redis-cluster';
      this.address = describeClusterAddress(server.servers);
      this.connecting = () =>
        createClusterConnection(server, options.clusterPublish, clientNameFor(this.namespace));
    } else {
      this.name = 'redis';
      this.address = describeAddress(server);
      this.connecting = () => createIoredisConnection(server, clientNameFor(this.namespace));
    }
    const { acquire, extend, release, leave } = this.scripts;
    this.batched = new Set(this.name === 'redis' ? [acquire, extend, release, leave] : []);
    const references = { namespace: this.namespace, scripts: this.scripts, store: this.runner() };
    this.references =
      this.name === 'redis-cluster'
        ? new RedisClusterReferences(references)
        : new RedisReferences(references);
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const keys = lockKeys(this.namespace, request.key);
    // On a cluster, the marker of the lock's own slot (a script may touch one slot only).
    const slot = this.name === 'redis-cluster' ? keySlot(keys.lock) : undefined;
    const reply = await this.run(
      this.scripts.acquire,
      [
        keys.lock,
        keys.queue,
        keys.fence,
        slot === undefined ? markerKey(this.namespace) : slotMarkerKey(this.namespace, slot),
      ],
      [
        request.owner,
        request.mode,
        String(request.ttl),
        request.fair ? '1' : '0',
        request.wait ? '1' : '0',
        String(request.waiterTtl),
        slot === undefined ? this.epoch : (this.slotEpochs.get(slot) ?? ''),
        String(this.maxTtl),
        String(this.fenceTtl),
        keys.channel,
        keys.hashed ? request.key : '',
        slot === undefined ? '' : this.namespaceCreated,
      ],
      request.key,
    );
    // The epoch comes back only when it is not the one sent (see acquire-4.lua).
    const [granted, value, epoch] = this.expectArray(reply, 2, request.key);
    if (typeof epoch === 'string') {
      if (slot === undefined) this.epoch = epoch;
      else this.slotEpochs.set(slot, epoch);
    }
    const number = Number(value);
    if (Number(granted) === 1) return { granted: true, fence: number };
    // -1: denied by the data-loss quarantine rather than by a holder.
    return Number(granted) === -1
      ? { granted: false, retryAfter: Math.max(1, number), quarantined: true }
      : { granted: false, retryAfter: Math.max(1, number) };
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const keys = lockKeys(this.namespace, key);
    const reply = await this.run(this.scripts.extend, [keys.lock], [owner, String(ttl)], key);
    return Number(reply) === 1;
  }

  async release(key: string, owner: string): Promise<boolean> {
    const keys = lockKeys(this.namespace, key);
    const reply = await this.run(
      this.scripts.release,
      [keys.lock, keys.queue, keys.fence],
      [owner, keys.channel, String(this.fenceTtl)],
      key,
    );
    return Number(reply) === 1;
  }

  async leave(key: string, owner: string): Promise<void> {
    const keys = lockKeys(this.namespace, key);
    await this.run(
      this.scripts.leave,
      [keys.lock, keys.queue, keys.fence],
      [owner, keys.channel, String(this.fenceTtl)],
      key,
    );
  }

  /**
   * Listens on the lock's channel (releases) and, for a waiter, on its
   * process's grant channel (hand-offs to it: keys.ts `grantChannel`).
   */
  async onRelease(key: string, listener: ReleaseListener, owner?: string): Promise<() => void> {
    this.assertOpen(key);
    const channels = this.wakeupChannels(key, owner);
    const listening = this.connect().then(async (connection) => {
      // close() may have come meanwhile: opening wake-ups now would outlive it.
      this.assertOpen(key);
      const wakeups = (this.wakeups ??= new Wakeups(() => connection.openSubscriber()));
      const outcomes = await Promise.allSettled(
        channels.map((channel) => wakeups.listen(channel, listener)),
      );
      const stops = outcomes.flatMap((outcome) =>
        outcome.status === 'fulfilled' ? [outcome.value] : [],
      );
      const stop = (): void => {
        for (const unsubscribe of stops) unsubscribe();
      };
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (failed !== undefined) {
        stop();
        throw failed.reason;
      }
      return stop;
    });
    try {
      return await withDeadline(listening, this.operationTimeout);
    } catch (error) {
      // Gave up waiting for the acknowledgement: drop the subscription if it comes later.
      listening.then(
        (stop) => {
          stop();
        },
        () => undefined,
      );
      if (this.closed) throw this.closedError(key);
      throw this.failure('subscribing to wake-ups failed', error, key);
    }
  }

  isListening(key: string, owner?: string): boolean {
    const { wakeups } = this;
    return (
      wakeups !== undefined &&
      this.wakeupChannels(key, owner).every((channel) => wakeups.isListening(channel))
    );
  }

  private wakeupChannels(key: string, owner: string | undefined): string[] {
    const { channel } = lockKeys(this.namespace, key);
    return owner === undefined ? [channel] : [channel, grantChannel(channel, owner)];
  }

  async inspect(key: string): Promise<LockState | null> {
    const keys = lockKeys(this.namespace, key);
    const reply = await this.run(
      this.scripts.inspect,
      [keys.lock, keys.queue],
      [keys.channel],
      key,
    );
    if (reply === null || reply === undefined) return null;
    const state = parseLockState(this.expectArray(reply, 2, key), key);
    // The caller's key, even for a hashed key whose lock hash stores it too.
    return state === null ? null : { ...state, key };
  }

  /** Locks, references and processes of the namespace (SCAN, bounded; see redis-snapshot.ts). */
  snapshot(prefix = ''): Promise<StoreSnapshot> {
    const runner = this.runner();
    return takeSnapshot(prefix, {
      ...runner,
      namespace: this.namespace,
      scripts: this.scripts,
      slotMarkers: this.name === 'redis-cluster',
      scan: (cursor, pattern, count) =>
        this.call('SCAN failed', undefined, (connection) =>
          connection.scan(cursor, pattern, count),
        ),
    });
  }

  /**
   * Registers or renews `processId` without refusing it (for callers that
   * do not count references); a process that already ran out stays dead.
   */
  async heartbeat(processId: string, ttl: number): Promise<void> {
    await this.recordBeat(processId, ttl, 'heartbeat', { host: hostname(), pid: process.pid });
  }

  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    return this.recordBeat(processId, ttl, first ? 'first' : 'next', info);
  }

  removeProcess(processId: string): Promise<void> {
    return this.references.removeProcess(processId);
  }

  addReference(resource: string, processId: string): Promise<boolean> {
    return this.references.addReference(resource, processId);
  }

  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    return this.references.removeReference(resource, processId, claimTtl);
  }

  countReferences(resource: string): Promise<number> {
    return this.references.countReferences(resource);
  }

  incrementTimesModified(resource: string, by: number): Promise<number> {
    return this.references.incrementTimesModified(resource, by);
  }

  timesModified(resource: string): Promise<number> {
    return this.references.timesModified(resource);
  }

  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return this.references.extendClaim(claim, ttl);
  }

  finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    return this.references.finishCompletion(claim, seenModified);
  }

  abandonCompletion(claim: CompletionClaim): Promise<void> {
    return this.references.abandonCompletion(claim);
  }

  reapDeadProcesses(): Promise<number> {
    return this.references.reapDeadProcesses();
  }

  claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    return this.references.claimPendingCompletion(kinds, claimTtl);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.wakeups?.close();
    } catch {
      // The subscriber was never connected, or the server is gone.
    }
    const connection = await this.connection?.catch(() => undefined);
    await connection?.close();
    this.deadlines?.stop();
  }

  private connect(): Promise<RedisConnection> {
    if (this.connection === undefined) {
      const connecting = this.connecting().then((connection) => {
        this.connected = connection;
        return connection;
      });
      // A failed creation is retried by the next operation.
      connecting.catch(() => {
        if (this.connection === connecting) this.connection = undefined;
      });
      this.connection = connecting;
    }
    return this.connection;
  }

  /** Records a heartbeat (beat-3.lua) and learns the namespace's epoch from it. */
  private async recordBeat(
    processId: string,
    ttl: number,
    mode: BeatMode,
    info: ProcessInfo,
  ): Promise<boolean> {
    const reply = await this.run(
      this.scripts.beat,
      [
        processesKey(this.namespace),
        processKey(this.namespace, processId),
        markerKey(this.namespace),
      ],
      [
        processId,
        String(ttl),
        this.epoch,
        randomUUID(),
        mode,
        info.host,
        String(info.pid),
        String(this.maxTtl),
      ],
      undefined,
    );
    const [alive, epoch, created] = this.expectArray(reply, 2, processId);
    this.epoch = String(epoch);
    this.namespaceCreated = typeof created === 'string' ? created : '0';
    return Number(alive) === 1;
  }

  /** The script runner handed to the reference and snapshot modules. */
  private runner(): ScriptRunner {
    return {
      run: (script, keys, args, key) => this.run(script, keys, args, key),
      expectArray: (reply, minLength, key) => this.expectArray(reply, minLength, key),
    };
  }

  /** Runs one script, bounded by the operation timeout, with failures as `BackendError`. */
  private run(
    script: LuaScript,
    keys: readonly string[],
    args: readonly string[],
    key: string | undefined,
  ): Promise<unknown> {
    return this.call(
      `${script.name}.lua failed`,
      key,
      (connection) => {
        const variant = scriptVariant(script, connection.publish);
        return this.batched.has(script)
          ? this.batcherFor(connection).run(variant, keys, args)
          : runScript(connection, variant, keys, args);
      },
      keys,
    );
  }

  /** One timer bounds every operation in flight: the connection's command timeout, or operationTimeout. */
  private deadlinesFor(connection: RedisConnection): DeadlineQueue {
    if (this.deadlines === undefined) {
      const ms = Math.min(connection.commandTimeout ?? Infinity, this.operationTimeout);
      this.deadlines = new DeadlineQueue(ms);
    }
    return this.deadlines;
  }

  private batcherFor(connection: RedisConnection): ScriptBatcher {
    if (this.batcher?.connection !== connection) {
      const batcher = new ScriptBatcher(
        (script, keys, args) => runScript(connection, script, keys, args),
        this.scripts.batch,
      );
      this.batcher = { connection, batcher };
    }
    return this.batcher.batcher;
  }

  /** Sends one command, bounded by the operation timeout, with failures as `BackendError`. */
  private async call<T>(
    what: string,
    key: string | undefined,
    send: (connection: RedisConnection) => Promise<T>,
    keys: readonly string[] = [],
  ): Promise<T> {
    this.assertOpen(key);
    try {
      const connection = this.connected ?? (await this.connect());
      return await this.deadlinesFor(connection).bound(send(connection));
    } catch (error) {
      if (error instanceof BackendError) throw error;
      if (isUnreadableData(error)) throw this.unreadable(what, error, key, keys);
      throw this.failure(what, error, key);
    }
  }

  /** The server is fine, but a key of this operation holds a value disref did not write. */
  private unreadable(
    what: string,
    error: Error,
    key: string | undefined,
    keys: readonly string[],
  ): BackendError {
    const reason = error.message.replace(/ script: \w+, on @user_script:\d+\.?$/, '');
    const names =
      keys.length === 1 ? `the key ${keys[0] ?? ''}` : `one of the keys ${keys.join(', ')}`;
    return new BackendError(
      this.address,
      `${what}: ${reason}; ${names} holds a value disref cannot read (written by another program, ` +
        `or by hand?): delete it (DEL), or give disref a namespace of its own`,
      { cause: error, ...(key === undefined ? {} : { key }) },
    );
  }

  private failure(what: string, error: unknown, key: string | undefined): BackendError {
    return new BackendError(
      this.address,
      `${what}: ${describeFailure(error, this.connected?.lastConnectionError())}; ${
        this.name === 'redis-cluster'
          ? "check that the cluster's nodes are up, reachable from this host, and report cluster_state:ok"
          : 'check that the Redis server is up and reachable from this host'
      }`,
      { cause: error, ...(key === undefined ? {} : { key }) },
    );
  }

  private assertOpen(key: string | undefined): void {
    if (this.closed) throw this.closedError(key);
  }

  private closedError(key: string | undefined): BackendError {
    return new BackendError(
      this.address,
      'this backend is closed; create a new one with connect()',
      {
        ...(key === undefined ? {} : { key }),
      },
    );
  }

  private expectArray(reply: unknown, minLength: number, key: string): unknown[] {
    if (!Array.isArray(reply) || reply.length < minLength) {
      throw new BackendError(this.address, `unexpected script reply ${JSON.stringify(reply)}`, {
        key,
      });
    }
    return reply as unknown[];
  }
}
