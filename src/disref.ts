/**
 * `connect()` and the `Disref` handle: one per process, holding the session
 * (identity + heartbeat) and the backend, and making every lock kind.
 * @module
 */
import type { Backend } from './backend.js';
import { Completions, type CompletionHandler } from './completion.js';
import { Reference } from './reference.js';
import { MemcachedBackend } from './backends/memcached/memcached-backend.js';
import { MemoryBackend } from './backends/memory/memory-backend.js';
import type { RedisClientLike } from './backends/redis/client.js';
import { RedisBackend } from './backends/redis/redis-backend.js';
import { createRedisQuorumBackend } from './backends/quorum/redis-quorum.js';
import { createRedisShardedBackend } from './backends/sharded/redis-sharded.js';
import { parseStoreUrl, urlFromEnvironment, type StoreAddress } from './config.js';
import { BackendError, InvalidArgumentError } from './errors.js';
import {
  ConflictLock,
  validateConflictOptions,
  type ConflictLockOptions,
} from './locks/conflict-lock.js';
import type { Lock } from './locks/lock.js';
import { Mutex } from './locks/mutex.js';
import { ReadWriteLock } from './locks/read-write-lock.js';
import { ReentrantLock } from './locks/reentrant-lock.js';
import {
  DEFAULT_HEARTBEAT_INTERVAL,
  DEFAULT_MAX_TTL,
  DEFAULT_NAMESPACE,
  resolveLockOptions,
  validateLockOptions,
  validateNamespace,
  type LockOptions,
  type ResolvedLockOptions,
} from './options.js';
import { Session } from './session.js';
import { validateDuration, validateKey, validateOptionsObject } from './validate.js';

/** Options of `connect()`. */
export interface ConnectOptions {
  /**
   * Store URL: `memory://[NAME]`, `redis://`, `rediss://`,
   * `redis-cluster://h:p,h:p`, `redis-sharded://h:p,h:p`,
   * `redis-quorum://h:p,h:p,h:p`, `memcached://h:p[,h:p]`.
   * @default process.env.DISREF_URL, else memory://
   */
  url?: string;
  /**
   * Prefix of every key disref writes, so several applications can share a store.
   * @default 'disref'
   */
  namespace?: string;
  /**
   * ms between heartbeats of this process.
   * @default 10_000
   */
  heartbeatInterval?: number;
  /**
   * ms without a heartbeat after which this process counts as dead.
   * @default 5 × heartbeatInterval
   */
  processTtl?: number;
  /**
   * Longest lease (ttl) any lock may ask for, in ms. After the store lost its
   * data, no lease is granted for this long, so old and new holders never overlap.
   * @default 60_000
   */
  maxTtl?: number;
  /** Defaults for every lock made by this instance. */
  defaults?: LockOptions;
  /**
   * Called with errors of background work: a failed heartbeat (store
   * unreachable), a completion that failed during recovery. Defaults to a
   * process warning (`DisrefWarning`).
   */
  onError?: (error: unknown) => void;
  /**
   * A Redis client to use instead of a URL: an ioredis `Redis` or `Cluster`
   * instance, or a connected node-redis (`@redis/client`) client. disref opens
   * one duplicate of it for wake-ups and never closes the client itself.
   * @example connect({ redis: new Redis(process.env.REDIS_URL), namespace: 'shop' })
   */
  redis?: RedisClientLike;
}

const CONNECT_OPTION_NAMES = [
  'url',
  'namespace',
  'heartbeatInterval',
  'processTtl',
  'maxTtl',
  'defaults',
  'onError',
  'redis',
] as const;

/** Options of `disref.conflictLock()`: the lock options (ttl excepted) and the retry policy. */
export type ConflictOptions = ConflictLockOptions & Omit<LockOptions, 'ttl'>;

/**
 * A connection of this process to a store. Make one per process with
 * {@link connect}; several in one process behave like several processes.
 */
export class Disref implements AsyncDisposable {
  readonly #session: Session;
  readonly #defaults: LockOptions;
  readonly #maxTtl: number;
  readonly #completions: Completions;
  readonly #references = new Map<string, Reference>();
  /** The namespace every key is written under. */
  readonly namespace: string;

  /** @internal Use {@link connect}. */
  constructor(
    session: Session,
    options: {
      namespace: string;
      defaults: LockOptions;
      maxTtl: number;
      onError: (error: unknown) => void;
    },
  ) {
    this.#session = session;
    this.namespace = options.namespace;
    this.#defaults = options.defaults;
    this.#maxTtl = options.maxTtl;
    this.#completions = new Completions(session, session.backend, options.onError);
    // Open references keep this process registered after close(), to be recovered like a crash.
    session.keepRegisteredOnCloseWhile(() => this.openReferences().length > 0);
  }

  /** Random identity of this process in the store. */
  get id(): string {
    return this.#session.id;
  }

  /** The backend, for tools built on disref (status, benchmarks). */
  get backend(): Backend {
    return this.#session.backend;
  }

  /** A mutex on `key`. */
  lock(key: string, options?: LockOptions): Lock {
    return new Mutex(this.#session, validateKey(key), this.#resolve(options));
  }

  /** A mutex that the same async call chain may take again (see `using`). */
  rlock(key: string, options?: LockOptions): Lock {
    return new ReentrantLock(this.#session, validateKey(key), this.#resolve(options));
  }

  /** A read/write lock: `.read()` shared, `.write()` exclusive; writers are not starved. */
  rwlock(key: string, options?: LockOptions): ReadWriteLock {
    const resolved = this.#resolve(options);
    if (!this.#session.backend.capabilities.sharedLocks) {
      throw new InvalidArgumentError(
        'rwlock',
        `a backend with read/write locks; the ${this.#session.backend.name} backend has none`,
        key,
      );
    }
    return new ReadWriteLock(this.#session, validateKey(key), resolved);
  }

  /**
   * A conflict-retry lock (memcachedlock's `zlock`): `run(fn)` runs `fn`
   * optimistically and re-runs it under the lock after a conflict.
   */
  conflictLock(key: string, options: ConflictOptions): ConflictLock {
    validateKey(key);
    const given: unknown = options;
    if (typeof given !== 'object' || given === null) {
      throw new InvalidArgumentError('options', 'an object with at least isConflict', options);
    }
    if ('ttl' in options) {
      throw new InvalidArgumentError(
        'options.ttl',
        'no ttl for a conflict lock: its lease length is `reserve`',
        (options as { ttl?: unknown }).ttl,
      );
    }
    const { isConflict, retries, reserve, ...lockOptions } = options;
    const policy = validateConflictOptions({ isConflict, retries, reserve });
    const mutex = this.lock(key, {
      ...lockOptions,
      ttl: validateDuration(policy.reserve, 'options.reserve', { min: 1, max: this.#maxTtl }),
    });
    return new ConflictLock(this.#session, mutex, policy);
  }

  /**
   * This process's reference to `resource` (registered in the store as a
   * holder). One per process and resource: a second call returns the same
   * reference while it is held.
   */
  async reference(resource: string): Promise<Reference> {
    validateKey(resource, 'resource');
    const completions = this.#completions;
    this.#session.assertOpen();
    const existing = this.#references.get(resource);
    if (existing?.held === true) return existing;
    const backend = this.#session.backend;
    if (!(await backend.addReference(resource, this.#session.id))) {
      // The store declared this process dead (a long pause): continue under a new identity.
      await this.#session.beat();
      if (!(await backend.addReference(resource, this.#session.id))) {
        throw new BackendError(backend.address, 'the store refused to register this process', {
          key: resource,
        });
      }
    }
    const reference = new Reference(
      {
        session: this.#session,
        backend,
        completions,
        lock: (key, options) => this.lock(key, options),
        forget: (gone) => {
          if (this.#references.get(gone.resource) === gone) this.#references.delete(gone.resource);
        },
      },
      resource,
      this.#session.id,
    );
    this.#references.set(resource, reference);
    return reference;
  }

  /**
   * Registers the completion for resources of `kind` (the text before the
   * first `:` of their name): it runs when the last reference is gone, in
   * the process that dereferenced last, or (after a crash or a failure) in a
   * live process that has a handler for the kind.
   */
  onComplete(kind: string, handler: CompletionHandler): void {
    validateKey(kind, 'kind');
    if (kind.includes(':')) {
      throw new InvalidArgumentError(
        'kind',
        'the text before the first ":" of resource names',
        kind,
      );
    }
    if (typeof handler !== 'function') {
      throw new InvalidArgumentError('handler', 'a function', handler);
    }
    this.#completions.register(kind, handler);
  }

  /** Resources this process still holds a reference to. */
  openReferences(): string[] {
    return [...this.#references.values()]
      .filter((reference) => reference.held)
      .map((reference) => reference.resource);
  }

  /** Runs one recovery round now (it also runs after every heartbeat). */
  async recover(): Promise<void> {
    await this.#completions.recover();
  }

  /**
   * Stops the heartbeat, releases every lease still held, and closes
   * connections this instance opened (never a client passed in). References
   * still held are not dereferenced: they are reported (a `DisrefWarning`)
   * and recovered like a crash once this process's heartbeat runs out.
   */
  async close(): Promise<void> {
    const open = this.#session.closed ? [] : this.openReferences();
    if (open.length > 0) {
      process.emitWarning(
        `disref: closed while holding ${String(open.length)} reference(s) (${open.slice(0, 5).join(', ')}${open.length > 5 ? ', ...' : ''}); ` +
          'they are recovered once this process counts as dead; dereference them before close() to complete them now',
        'DisrefWarning',
      );
    }
    await this.#session.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #resolve(options: LockOptions | undefined): ResolvedLockOptions {
    const own = validateLockOptions(options, 'options', this.#maxTtl);
    return resolveLockOptions(own, this.#defaults, this.#session.backend, 'options');
  }
}

/**
 * Connects this process to a store. With no argument, `DISREF_URL` (or the
 * memcached server variables) decide; with nothing set, the embedded
 * in-memory store, shared by every `Disref` of this Node process.
 *
 * @example const disref = await connect('redis://127.0.0.1:6379');
 */
export async function connect(target?: string | ConnectOptions): Promise<Disref> {
  const options: ConnectOptions = typeof target === 'string' ? { url: target } : (target ?? {});
  const raw = validateOptionsObject(options, 'options', CONNECT_OPTION_NAMES);
  if (raw.redis !== undefined && options.url !== undefined) {
    throw new InvalidArgumentError(
      'options.url',
      'no url when options.redis passes a client (the client decides the server)',
      options.url,
    );
  }
  const address =
    raw.redis === undefined ? parseStoreUrl(options.url ?? urlFromEnvironment()) : undefined;
  const namespace = validateNamespace(options.namespace ?? DEFAULT_NAMESPACE);
  const heartbeatInterval = validateDuration(
    options.heartbeatInterval ?? DEFAULT_HEARTBEAT_INTERVAL,
    'options.heartbeatInterval',
    { min: 10, max: 3_600_000 },
  );
  const processTtl = validateDuration(
    options.processTtl ?? 5 * heartbeatInterval,
    'options.processTtl',
    { min: heartbeatInterval + 1, max: 86_400_000 },
  );
  const maxTtl = validateDuration(options.maxTtl ?? DEFAULT_MAX_TTL, 'options.maxTtl', {
    min: 1,
    max: 86_400_000,
  });
  const defaults = validateLockOptions(options.defaults, 'options.defaults', maxTtl);
  const onError =
    options.onError ??
    ((error: unknown) => {
      const cause =
        error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
      process.emitWarning(`disref: ${String(error)}${cause}`, 'DisrefWarning');
    });
  const backend =
    address === undefined
      ? new RedisBackend({ server: { client: raw.redis }, namespace, maxTtl })
      : createBackend(address, { namespace, maxTtl });
  // Validate the defaults against the backend's capabilities now, not on first use.
  resolveLockOptions({}, defaults, backend, 'options.defaults');
  const session = new Session({
    backend,
    ownsBackend: true,
    heartbeatInterval,
    processTtl,
    maxTtl,
    onHeartbeatError: onError,
  });
  try {
    await session.start();
  } catch (error) {
    await session.close().catch(() => undefined);
    throw error;
  }
  return new Disref(session, { namespace, defaults, maxTtl, onError });
}

function createBackend(
  address: StoreAddress,
  { namespace, maxTtl }: { namespace: string; maxTtl: number },
): Backend {
  switch (address.scheme) {
    case 'memory':
      return new MemoryBackend({ storeName: address.name, namespace });
    case 'redis':
    case 'rediss':
    case 'redis-cluster':
      return new RedisBackend({ server: address, namespace, maxTtl });
    case 'memcached':
      return new MemcachedBackend({ servers: address.servers, namespace, maxTtl });
    case 'redis-sharded':
      return createRedisShardedBackend(address, { namespace, maxTtl });
    case 'redis-quorum':
      return createRedisQuorumBackend(address, { namespace, maxTtl });
    default: {
      // Unreachable while every scheme config.ts parses has a case above.
      const { scheme } = address as { readonly scheme: string };
      throw new InvalidArgumentError(
        'url',
        `a scheme whose backend is available in this version (memory://, redis://, rediss://, redis-cluster://, memcached://); the ${scheme}:// backend is not built yet`,
        `${scheme}://…`,
      );
    }
  }
}
