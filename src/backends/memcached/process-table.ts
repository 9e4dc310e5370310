/**
 * Process liveness on memcached: one heartbeat item per process
 * (`<ns>:p:<id>`, on the server rendezvous hashing picks for `p:<id>`),
 * holding its expiry on its own wall clock.
 *
 * Dead for good. A process is judged dead by others only once its expiry
 * plus {@link CLOCK_TOLERANCE} has passed on their clock (the tolerance
 * covers clock differences, as for lock leases), and only after they have
 * marked its item dead with compare-and-swap. A process judges itself by
 * its own clock without tolerance: when its own expiry has passed, it marks
 * itself dead. A heartbeat is a compare-and-swap on the same item, so a beat
 * and a declaration of death cannot both win: once anyone pruned a holder
 * as dead, that identity can never beat again, whatever the clocks say. An
 * item that is gone (expired, deleted on close, evicted) is dead too; a
 * heartbeat never recreates it (only a first beat creates the item).
 *
 * The item's memcached expiry is the heartbeat ttl plus the tolerance,
 * rounded up (`exptimeFor`), so memcached drops it only after everyone
 * would judge it dead anyway.
 * @module
 */
import type { MemcachedClient, ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import { MAX_CAS_ATTEMPTS, casPause } from './cas.js';
import { itemName } from './keys.js';
import { CLOCK_TOLERANCE } from './lock-record.js';
import { exptimeFor, type MetaResponse } from './protocol.js';
import { decodeProcess, encodeProcess, type ProcessRecord } from './reference-records.js';

/** How long a dead mark is kept, in ms; after that the missing item says the same. */
const DEAD_MARK_RETENTION = 60_000;
/** Most process ids remembered as dead or live; past it the oldest are forgotten. */
const CACHE_LIMIT = 10_000;

export class ProcessTable {
  private readonly client: MemcachedClient;
  private readonly namespace: string;
  /** CAS value and expiry of our own last beat per process: the next beat is one round trip. */
  private readonly ownBeats = new Map<
    string,
    { readonly cas: string; readonly expiresAt: number }
  >();
  /**
   * Wall-clock ms until which a process surely cannot have been declared
   * dead (its expiry as last read): no need to read its item again before.
   */
  private readonly liveUntil = new Map<string, number>();
  /** Processes known dead: dead is for good, so this never goes stale. */
  private readonly dead = new Set<string>();

  constructor(client: MemcachedClient, namespace: string) {
    this.client = client;
    this.namespace = namespace;
  }

  /** The server of a process's items (heartbeat and held list). */
  serverOf(processId: string): ServerPool {
    return this.client.serverFor(`p:${processId}`);
  }

  /**
   * Records a heartbeat. `first` creates the item (a new identity); else
   * the beat renews the item only if the process is still live. Resolves
   * false when it is not (it must take a new identity).
   */
  async beat(processId: string, ttl: number, first: boolean): Promise<boolean> {
    const server = this.serverOf(processId);
    const key = this.itemOf(processId);
    const exptime = `T${String(exptimeFor(ttl + CLOCK_TOLERANCE))}`;
    const write = (cas: string | undefined, now: number) => ({
      command: 'ms' as const,
      key,
      value: encodeProcess({ expiresAt: now + ttl, lastBeat: now, dead: false }),
      flags: [exptime, 'c', ...(cas === undefined ? [] : [`C${cas}`])],
    });
    if (first) {
      const now = Date.now();
      const [written] = await this.client.meta(server, [write(undefined, now)]);
      if (written.status !== 'HD') {
        throw new MemcachedServerError(server.address, `heartbeat of ${processId} not stored`);
      }
      this.remember(processId, written, now + ttl);
      return true;
    }
    const own = this.ownBeats.get(processId);
    if (own !== undefined && own.expiresAt > Date.now()) {
      // Unchanged since our last beat (so not declared dead): renew in one round trip.
      const now = Date.now();
      const [written] = await this.client.meta(server, [write(own.cas, now)]);
      if (written.status === 'HD') {
        this.remember(processId, written, now + ttl);
        return true;
      }
    }
    this.ownBeats.delete(processId);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      await casPause(attempt);
      const [item] = await this.client.meta(server, [{ command: 'mg', key, flags: ['v', 'c'] }]);
      const now = Date.now();
      const record = this.decode(server, processId, item);
      if (record === undefined || record.dead) {
        this.forgetLive(processId);
        return false;
      }
      const cas = item.flags.get('c') ?? '0';
      if (record.expiresAt <= now) {
        // It ran out on its own clock: others may already count it dead. Make that final.
        if (await this.markDead(processId, record, cas)) return false;
        continue;
      }
      const [written] = await this.client.meta(server, [write(cas, now)]);
      if (written.status === 'HD') {
        this.remember(processId, written, now + ttl);
        return true;
      }
    }
    throw new MemcachedServerError(
      server.address,
      `heartbeat of ${processId} still contended after ${String(MAX_CAS_ATTEMPTS)} attempts; retry`,
    );
  }

  /**
   * Which of `processIds` are dead, as judged by others at wall-clock
   * `now`: gone, marked dead, or run out for longer than the clock
   * tolerance (those are marked dead here first, so they stay dead).
   */
  async deadAmong(processIds: readonly string[], now: number): Promise<Set<string>> {
    const dead = new Set<string>();
    const unknown: string[] = [];
    for (const id of new Set(processIds)) {
      if (this.dead.has(id)) dead.add(id);
      else if ((this.liveUntil.get(id) ?? 0) <= now) unknown.push(id);
    }
    const records = await this.read(unknown, true);
    await Promise.all(
      unknown.map(async (id) => {
        const found = records.get(id);
        if (found === undefined || found.record.dead) {
          this.markedDead(id);
          dead.add(id);
        } else if (found.record.expiresAt + CLOCK_TOLERANCE <= now) {
          if (await this.declareDead(id, found.record, found.cas, now)) dead.add(id);
        } else {
          this.setLiveUntil(id, found.record.expiresAt);
        }
      }),
    );
    return dead;
  }

  /**
   * Whether the process's item is gone or marked dead: the only states in
   * which anyone may have pruned it (no clock involved).
   */
  async isGone(processId: string): Promise<boolean> {
    if (this.dead.has(processId)) return true;
    const records = await this.read([processId], false);
    const found = records.get(processId);
    return found === undefined || found.record.dead;
  }

  /**
   * Judges a process by its own item and clock, for its own operations:
   * live while its expiry has not passed on this clock.
   */
  judgeOwn(processId: string, item: MetaResponse, now: number): boolean {
    const record = this.decode(this.serverOf(processId), processId, item);
    return record !== undefined && !record.dead && record.expiresAt > now;
  }

  /** Heartbeat records of `processIds` (absent: gone), read per server, pipelined. */
  async read(
    processIds: readonly string[],
    withCas: boolean,
  ): Promise<Map<string, { readonly record: ProcessRecord; readonly cas: string }>> {
    const byServer = new Map<ServerPool, string[]>();
    for (const id of processIds) {
      const server = this.serverOf(id);
      const ids = byServer.get(server) ?? [];
      ids.push(id);
      byServer.set(server, ids);
    }
    const found = new Map<string, { record: ProcessRecord; cas: string }>();
    await Promise.all(
      [...byServer].map(async ([server, ids]) => {
        const replies = await this.client.meta(
          server,
          ids.map((id) => ({
            command: 'mg' as const,
            key: this.itemOf(id),
            flags: withCas ? ['v', 'c'] : ['v'],
          })),
        );
        replies.forEach((item, index) => {
          const id = ids[index] ?? '';
          const record = this.decode(server, id, item);
          if (record !== undefined) found.set(id, { record, cas: item.flags.get('c') ?? '0' });
        });
      }),
    );
    return found;
  }

  /** A process that closed: its item is deleted, so it is dead for everyone at once. */
  async remove(processId: string): Promise<void> {
    this.ownBeats.delete(processId);
    await this.client.meta(this.serverOf(processId), [
      { command: 'md', key: this.itemOf(processId) },
    ]);
    this.markedDead(processId);
  }

  /** Marks a process that ran out dead unless it beat meanwhile; resolves whether it is dead. */
  private async declareDead(
    processId: string,
    record: ProcessRecord,
    cas: string,
    now: number,
  ): Promise<boolean> {
    let current = { record, cas };
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (current.record.expiresAt + CLOCK_TOLERANCE > now) {
        this.setLiveUntil(processId, current.record.expiresAt);
        return false; // it beat in time
      }
      if (await this.markDead(processId, current.record, current.cas)) return true;
      await casPause(attempt + 1);
      const reread = (await this.read([processId], true)).get(processId);
      if (reread === undefined || reread.record.dead) {
        this.markedDead(processId);
        return true;
      }
      current = reread;
    }
    throw new MemcachedServerError(
      this.serverOf(processId).address,
      `could not declare process ${processId} dead (contention); retry`,
    );
  }

  /** Writes the dead mark if the item is unchanged since it was read with `cas`. */
  private async markDead(processId: string, record: ProcessRecord, cas: string): Promise<boolean> {
    const [written] = await this.client.meta(this.serverOf(processId), [
      {
        command: 'ms',
        key: this.itemOf(processId),
        value: encodeProcess({ ...record, dead: true }),
        flags: [`T${String(exptimeFor(DEAD_MARK_RETENTION))}`, `C${cas}`],
      },
    ]);
    if (written.status !== 'HD') return false;
    this.markedDead(processId);
    return true;
  }

  private remember(processId: string, written: MetaResponse, expiresAt: number): void {
    const cas = written.flags.get('c');
    if (cas === undefined) this.ownBeats.delete(processId);
    else this.ownBeats.set(processId, { cas, expiresAt });
    this.setLiveUntil(processId, expiresAt);
  }

  private setLiveUntil(processId: string, until: number): void {
    if (!this.liveUntil.has(processId) && this.liveUntil.size >= CACHE_LIMIT) {
      this.liveUntil.clear(); // only a shortcut: forgetting costs a read
    }
    this.liveUntil.set(processId, until);
  }

  private forgetLive(processId: string): void {
    this.liveUntil.delete(processId);
    this.ownBeats.delete(processId);
    this.markedDead(processId);
  }

  private markedDead(processId: string): void {
    this.liveUntil.delete(processId);
    this.ownBeats.delete(processId);
    if (this.dead.size >= CACHE_LIMIT) {
      const oldest = this.dead.values().next();
      if (oldest.done !== true) this.dead.delete(oldest.value);
    }
    this.dead.add(processId);
  }

  private itemOf(processId: string): string {
    return itemName(this.namespace, 'p', processId);
  }

  private decode(
    server: ServerPool,
    processId: string,
    item: MetaResponse,
  ): ProcessRecord | undefined {
    if (item.status !== 'VA' || item.value === undefined) return undefined;
    try {
      return decodeProcess(item.value);
    } catch (error) {
      throw new MemcachedServerError(
        server.address,
        `item ${this.itemOf(processId)} is not a disref process record (${String(error)}); another application may use this namespace`,
        { cause: error },
      );
    }
  }
}
