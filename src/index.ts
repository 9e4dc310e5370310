/**
 * disref: distributed locks with fencing tokens, and distributed reference
 * counting, over an embedded store, Redis and memcached.
 * @module
 */
export { connect, Disref, type ConnectOptions, type ConflictOptions } from './disref.js';
export type { Lock } from './locks/lock.js';
export type { Reference } from './reference.js';
export type { CompletionHandler, CompletionInfo } from './completion.js';
export { Lease } from './locks/lease.js';
export type { ReadWriteLock } from './locks/read-write-lock.js';
export type { ConflictLock, ConflictAttempt, ConflictLockOptions } from './locks/conflict-lock.js';
export type { LockOptions, AcquireOptions } from './options.js';
export {
  DisrefError,
  LockTimeoutError,
  LockLostError,
  ConflictError,
  BackendError,
  InvalidArgumentError,
  StaleFenceError,
  type DisrefErrorCode,
} from './errors.js';
export {
  lock,
  rlock,
  zlock,
  DONT_LOCK,
  type KeyOrSkip,
  type WrapperOptions,
  type ZlockOptions,
} from './wrappers.js';
export type {
  Backend,
  Capabilities,
  AcquireRequest,
  AcquireResult,
  LockMode,
  LockState,
  HolderState,
  CompletionClaim,
  ReferenceOperations,
} from './backend.js';
export {
  channels,
  type LockAcquiredEvent,
  type LockReleasedEvent,
  type LockExtendedEvent,
  type LockLostEvent,
  type CompletionEvent,
  type CompletionFinishedEvent,
  type CompletionFailedEvent,
} from './events.js';
export type { FencedResource } from './fenced.js';
export { fencedRedisKey } from './backends/redis/fenced-key.js';
export { fencedMemcachedItem } from './backends/memcached/fenced-item.js';
export {
  fencedSqlRow,
  type FencedSqlRowOptions,
  type SqlQuery,
  type SqlResult,
} from './fenced-sql-row.js';
