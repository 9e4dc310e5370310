/**
 * `disref.rwlock(key)`: shared readers, one exclusive writer. A waiting
 * writer stops new readers from joining (through the fair queue, or a
 * pending-writer mark when `fair: false`), so writers are not starved.
 * @module
 */
import type { LockMode } from '../backend.js';
import type { ResolvedLockOptions } from '../options.js';
import type { Session } from '../session.js';
import { BaseLock, type Lock } from './lock.js';

class ReadLock extends BaseLock {
  protected readonly mode: LockMode = 'shared';
}

class WriteLock extends BaseLock {
  protected readonly mode: LockMode = 'exclusive';
}

/** A read/write lock: `read()` and `write()` give the two sides as ordinary locks. */
export class ReadWriteLock {
  readonly key: string;
  readonly #reader: ReadLock;
  readonly #writer: WriteLock;

  constructor(session: Session, key: string, options: ResolvedLockOptions) {
    this.key = key;
    this.#reader = new ReadLock(session, key, options);
    this.#writer = new WriteLock(session, key, options);
  }

  /** The shared side: any number of readers at once, never with a writer. */
  read(): Lock {
    return this.#reader;
  }

  /** The exclusive side: one writer, no readers. */
  write(): Lock {
    return this.#writer;
  }
}
