/**
 * A memcached item guarded by fences: the item holds the highest fence seen
 * and the value, and changes only by compare-and-swap (`cas.ts`), so the
 * fence comparison and the write happen as one step even with many writers.
 *
 * Item format: a header line `fenced1 <fence>`, then, once a value was
 * written, a newline and the value (UTF-8). A read by a holder whose fence
 * is new records it (header only, if nothing was written yet).
 *
 * The item is named after the key itself, like `fencedRedisKey`: no
 * namespace. A key memcached cannot hold (over 250 bytes, spaces, non-ASCII)
 * is replaced by `~fenced#<sha256 of the key, base64url>`. The item lives on
 * the server of the pool that rendezvous hashing picks for that name.
 * @module
 */
import { createHash } from 'node:crypto';
import type { Disref } from '../../disref.js';
import { BackendError, InvalidArgumentError, StaleFenceError } from '../../errors.js';
import { checkFence, checkValue, type FencedResource } from '../../fenced.js';
import { validateKey } from '../../validate.js';
import { compareAndSwap, type CasTarget, type Decision } from './cas.js';
import type { MemcachedClient } from './client.js';
import { MemcachedServerError } from './connection.js';
import { MemcachedBackend } from './memcached-backend.js';
import { isValidKey, type MetaResponse } from './protocol.js';

/** First line of every fenced item: `fenced1 <fence>`. */
const HEADER = /^fenced1 ([1-9][0-9]{0,15})$/;

/** What a fenced item holds. */
interface FencedState {
  /** The highest fence seen; 0 when there is no item. */
  readonly fence: number;
  /** The value; undefined when only read so far. */
  readonly value: string | undefined;
}

/** The memcached item name for `key`, hashed when memcached could not hold it. */
export function fencedItemName(key: string): string {
  if (isValidKey(key)) return key;
  return `~fenced#${createHash('sha256').update(key, 'utf8').digest('base64url')}`;
}

/** Serialises a fenced item. */
export function encodeFencedItem(fence: number, value: string | undefined): string {
  const header = `fenced1 ${String(fence)}`;
  return value === undefined ? header : `${header}\n${value}`;
}

/** Parses a fenced item; throws `Error` saying what is wrong when it is not one. */
export function decodeFencedItem(raw: Buffer): FencedState {
  const text = raw.toString('utf8');
  const newline = text.indexOf('\n');
  const header = newline === -1 ? text : text.slice(0, newline);
  const match = HEADER.exec(header);
  const fence = match === null ? NaN : Number(match[1]);
  if (!Number.isSafeInteger(fence)) {
    const shown = JSON.stringify(header.length > 40 ? `${header.slice(0, 40)}...` : header);
    throw new Error(`it starts with ${shown}, not "fenced1 <fence>"`);
  }
  return { fence, value: newline === -1 ? undefined : text.slice(newline + 1) };
}

/**
 * A fenced resource stored in memcached, through the connections of
 * `disref`, which must be connected to memcached (`memcached://...`); the
 * item is never closed or flushed by disref, and `disref.close()` ends its
 * connections. To keep fenced items on other servers than the locks,
 * connect a second `Disref` to them.
 *
 * `key` is the item's name as is (no namespace); a key memcached cannot
 * hold is hashed. The value is a string (memcached's item size limit, 1 MB
 * by default, applies). Both `read` and `write` are compare-and-swap loops
 * of at most 16 tries with random growing pauses; a resource that stays
 * contended past them fails with `BackendError` (retry), a stale fence with
 * `StaleFenceError`, and an item that is not a fenced value (written by
 * something else) with `BackendError` naming it.
 *
 * memcached may evict items under memory pressure, and loses them on a
 * restart: the highest fence goes with them. Give fenced items a memcached
 * that does not evict (`-M`) and enough memory, as for locks.
 *
 * @throws InvalidArgumentError when `disref` is not connected to memcached,
 *   or `key` is not a valid key.
 * @example
 * const disref = await connect('memcached://10.0.0.1:11211');
 * const stock = fencedMemcachedItem(disref, 'sku:42:stock');
 * await disref.lock('sku:42').using(async (lease) => {
 *   const current = Number((await stock.read(lease.fence)) ?? '0');
 *   await stock.write(lease.fence, String(current - 1));
 * });
 */
export function fencedMemcachedItem(disref: Disref, key: string): FencedResource {
  validateKey(key);
  const backend = disref.backend;
  if (!(backend instanceof MemcachedBackend)) {
    throw new InvalidArgumentError(
      'disref',
      `a Disref connected to memcached (memcached://...), not to ${backend.name}, for a fenced memcached item`,
      disref,
    );
  }
  return new FencedMemcachedItem(backend.client, key);
}

class FencedMemcachedItem implements FencedResource {
  private readonly target: CasTarget;

  constructor(
    private readonly client: MemcachedClient,
    readonly key: string,
  ) {
    const name = fencedItemName(key);
    this.target = {
      server: client.serverFor(name),
      key: name,
      exptime: 0,
      what: `fenced item ${name}`,
    };
  }

  async read(fence: number): Promise<string | undefined> {
    const seen = checkFence(fence);
    return this.change((state) => {
      if (seen === state.fence) return { kind: 'keep', result: state.value };
      return { kind: 'set', value: encodeFencedItem(seen, state.value), result: state.value };
    }, seen);
  }

  async write(fence: number, value: string): Promise<void> {
    const seen = checkFence(fence);
    const written = encodeFencedItem(seen, checkValue(value));
    await this.change(() => ({ kind: 'set', value: written, result: undefined }), seen);
  }

  /**
   * One compare-and-swap loop: refuses `fence` when the item has seen a
   * higher one, otherwise applies `decide`.
   */
  private async change<T>(decide: (state: FencedState) => Decision<T>, fence: number): Promise<T> {
    try {
      return await compareAndSwap(this.client, this.target, (item) => {
        const state = this.decode(item);
        if (fence < state.fence) throw new StaleFenceError(this.key, fence, state.fence);
        return decide(state);
      });
    } catch (error) {
      if (!(error instanceof MemcachedServerError)) throw error;
      throw new BackendError(error.address, error.reason, { cause: error, key: this.key });
    }
  }

  private decode(item: MetaResponse): FencedState {
    if (item.status !== 'VA') return { fence: 0, value: undefined };
    try {
      return decodeFencedItem(item.value ?? Buffer.alloc(0));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new BackendError(
        this.target.server.address,
        `item ${this.target.key} is not a fenced value written by disref (${reason}); ` +
          'something else wrote it: delete the item or use another key',
        { cause: error, key: this.key },
      );
    }
  }
}
