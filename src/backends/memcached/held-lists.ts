/**
 * The resources each process holds references to, one item per process
 * (`<ns>:h:<id>`, on the same server as its heartbeat item). Recovery reads
 * it to find what a dead process held; memcached cannot list keys, so
 * without it a resource whose last holder died would never be found.
 *
 * A process changes only its own list (a reaper deletes it once the process
 * is dead), so contention comes from this process's own concurrent calls:
 * they are combined here into one compare-and-swap per round, instead of
 * many writers racing for the same item. Additions are refused, atomically
 * with the list's read, when the process is no longer live on its own
 * clock (its heartbeat item is read in the same round trip).
 *
 * The list never expires (`T0`): it must outlive its process until a live
 * one reaps it, however long that takes. It is deleted when it becomes
 * empty and when its process is reaped.
 * @module
 */
import type { MemcachedClient } from './client.js';
import { MemcachedServerError } from './connection.js';
import { compareAndSwap, type Decision } from './cas.js';
import { itemName } from './keys.js';
import type { ProcessTable } from './process-table.js';
import type { MetaResponse } from './protocol.js';
import { decodeHeld, encodeHeld } from './reference-records.js';

/** Largest held list, in bytes: well under memcached's default 1 MB item limit. */
export const MAX_LIST_BYTES = 512 * 1024;

interface Change {
  readonly resource: string;
  readonly add: boolean;
  readonly resolve: (done: boolean) => void;
  readonly reject: (error: unknown) => void;
}

export class HeldLists {
  private readonly client: MemcachedClient;
  private readonly namespace: string;
  private readonly processes: ProcessTable;
  /** Changes waiting for the next round, per process. */
  private readonly queued = new Map<string, Change[]>();

  constructor(client: MemcachedClient, namespace: string, processes: ProcessTable) {
    this.client = client;
    this.namespace = namespace;
    this.processes = processes;
  }

  /** Adds `resource` to the list; resolves false (nothing written) if the process is not live. */
  add(processId: string, resource: string): Promise<boolean> {
    return this.enqueue(processId, resource, true);
  }

  /** Removes `resource` from the list (deleting the list when it becomes empty). */
  async remove(processId: string, resource: string): Promise<void> {
    await this.enqueue(processId, resource, false);
  }

  /** The list and its CAS value (undefined when there is none). */
  async read(processId: string): Promise<{ resources: string[]; cas: string | undefined }> {
    const [item] = await this.client.meta(this.processes.serverOf(processId), [
      { command: 'mg', key: this.itemOf(processId), flags: ['v', 'c'] },
    ]);
    if (item.status !== 'VA') return { resources: [], cas: undefined };
    return { resources: this.decode(processId, item), cas: item.flags.get('c') ?? '0' };
  }

  /**
   * Deletes the list of a reaped process if it is unchanged since it was
   * read with `cas`; resolves false when it changed (read it again).
   */
  async deleteIf(processId: string, cas: string | undefined): Promise<boolean> {
    if (cas === undefined) return true;
    const [deleted] = await this.client.meta(this.processes.serverOf(processId), [
      { command: 'md', key: this.itemOf(processId), flags: [`C${cas}`] },
    ]);
    return deleted.status !== 'EX';
  }

  private enqueue(processId: string, resource: string, add: boolean): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const changes = this.queued.get(processId);
      const change = { resource, add, resolve, reject };
      if (changes !== undefined) {
        changes.push(change); // a round is running: the next one takes it
        return;
      }
      this.queued.set(processId, [change]);
      void this.flush(processId);
    });
  }

  /** Applies queued changes, one compare-and-swap round per batch, until none are left. */
  private async flush(processId: string): Promise<void> {
    for (;;) {
      const batch = this.queued.get(processId) ?? [];
      if (batch.length === 0) {
        this.queued.delete(processId);
        return;
      }
      // Changes queued from now on wait for the next round.
      this.queued.set(processId, []);
      try {
        const live = await this.apply(processId, batch);
        for (const change of batch) change.resolve(!change.add || live);
      } catch (error) {
        for (const change of batch) change.reject(error);
      }
    }
  }

  private apply(processId: string, batch: readonly Change[]): Promise<boolean> {
    const server = this.processes.serverOf(processId);
    const heartbeat = {
      command: 'mg' as const,
      key: itemName(this.namespace, 'p', processId),
      flags: ['v'],
    };
    return compareAndSwap(
      this.client,
      { server, key: this.itemOf(processId), exptime: 0, what: `held list of ${processId}` },
      (item, [beat], now): Decision<boolean> => {
        const live = beat !== undefined && this.processes.judgeOwn(processId, beat, now);
        const current = item.status === 'VA' ? this.decode(processId, item) : [];
        const next = new Set(current);
        for (const change of batch) {
          if (!change.add) next.delete(change.resource);
          else if (live) next.add(change.resource);
        }
        if (next.size === current.length && current.every((name) => next.has(name))) {
          return { kind: 'keep', result: live };
        }
        if (next.size === 0) return { kind: 'delete', result: live };
        const value = encodeHeld([...next]);
        if (Buffer.byteLength(value) > MAX_LIST_BYTES) {
          throw new MemcachedServerError(
            server.address,
            `process ${processId} holds too many references (${String(next.size)}) for one memcached item; dereference some first`,
          );
        }
        return { kind: 'set', value, result: live };
      },
      [heartbeat],
    );
  }

  private itemOf(processId: string): string {
    return itemName(this.namespace, 'h', processId);
  }

  private decode(processId: string, item: MetaResponse): string[] {
    try {
      return decodeHeld(item.value ?? Buffer.alloc(0));
    } catch (error) {
      throw new MemcachedServerError(
        this.processes.serverOf(processId).address,
        `item ${this.itemOf(processId)} is not a disref held list (${String(error)}); another application may use this namespace`,
        { cause: error },
      );
    }
  }
}
