/**
 * `disref.lock(key)`: a mutex. One holder at a time.
 * @module
 */
import type { LockMode } from '../backend.js';
import { BaseLock } from './lock.js';

export class Mutex extends BaseLock {
  protected readonly mode: LockMode = 'exclusive';
}
