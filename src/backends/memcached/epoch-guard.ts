/**
 * Detecting that a memcached server lost its data (restart, `flush_all`,
 * eviction: memcached is a cache), so that no lease is granted on it while
 * a lease granted before the loss may still run.
 *
 * On every server, each namespace has a marker item `<ns>:~epoch` (never
 * expiring) holding a random epoch id. Every acquire reads it (pipelined
 * with the lock record, no extra round trip) and again right after writing
 * a grant: a grant counts only if the marker was there, unchanged, on both
 * sides of the write. A missing marker is recreated after setting a
 * quarantine item `<ns>:~quarantine` whose memcached expiry (server clock,
 * rounded up) is the quarantine; while it exists nothing is granted on that
 * server. The quarantine lasts:
 *
 * - `maxTtl` from now, when this process had seen an epoch on that server
 *   (it witnessed the loss), or sees the epoch change (someone else did);
 * - until the server's start + `maxTtl`, when `stats` uptime is shorter than
 *   `maxTtl` (a restart under live leases looks just like a new server);
 * - `maxTtl` from now, when the server was ever flushed (`cmd_flush` > 0):
 *   the flush may have been recent, and nothing tells when it was.
 *
 * Residual case: a marker evicted (not flushed) on a server up for longer
 * than `maxTtl`, noticed first by a process that never saw its epoch, looks
 * like a new namespace and is granted at once; and a lock item evicted on
 * its own cannot be noticed at all (its holder learns at its next extend,
 * which returns false). Hence: give locks a memcached of their own, or run
 * it with `-M` (return errors instead of evicting).
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { MemcachedClient, ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import { namespaceItem } from './keys.js';
import { exptimeFor, type MetaRequest, type MetaResponse } from './protocol.js';

/** Whether grants may go ahead on a server, and under which epoch. */
export type Gate =
  | { readonly open: true; readonly epoch: string }
  | { readonly open: false; readonly retryAfter: number };
/**
 * `stats` uptime starts at 2 s and ticks once a second: the real uptime is
 * at least `uptime - 2` s. One more second of margin for other versions.
 */
const UPTIME_SLACK_SECONDS = 3;
const MAX_QUARANTINE_ATTEMPTS = 5;

/** The ms a quarantine item read with `t` still runs: whole seconds left, rounded down, so one more. */
function msLeft(quarantine: MetaResponse): number {
  const left = Number(quarantine.flags.get('t') ?? '0');
  return left > 0 ? (left + 1) * 1000 : 1000;
}

export class EpochGuard {
  /** Read the marker and the quarantine; pipeline these in front of a grant and after it. */
  readonly probes: readonly [MetaRequest, MetaRequest];
  private readonly client: MemcachedClient;
  private readonly maxTtl: number;
  private readonly markerKey: string;
  private readonly quarantineKey: string;
  /** The epoch this process last saw per server id. */
  private readonly seen = new Map<string, string>();

  constructor(client: MemcachedClient, namespace: string, maxTtl: number) {
    this.client = client;
    this.maxTtl = maxTtl;
    this.markerKey = namespaceItem(namespace, 'epoch');
    this.quarantineKey = namespaceItem(namespace, 'quarantine');
    this.probes = [
      { command: 'mg', key: this.markerKey, flags: ['v'] },
      { command: 'mg', key: this.quarantineKey, flags: ['t'] },
    ];
  }

  /**
   * Judges the probes read before a grant: open, or closed for
   * `retryAfter` ms. Recreates a missing marker (with its quarantine).
   */
  async admit(server: ServerPool, marker: MetaResponse, quarantine: MetaResponse): Promise<Gate> {
    if (marker.status === 'EN') {
      const { wait, epoch } = await this.recover(server);
      if (wait > 0) return { open: false, retryAfter: wait };
      // The marker vanished again at once: try again shortly.
      return epoch === undefined ? { open: false, retryAfter: 1 } : { open: true, epoch };
    }
    const epoch = this.epochOf(server, marker);
    const known = this.seen.get(server.id);
    this.seen.set(server.id, epoch);
    if (known !== undefined && known !== epoch) {
      // Someone else found the data gone and may have judged it a new namespace.
      await this.raiseQuarantine(server, this.maxTtl);
      return { open: false, retryAfter: this.maxTtl };
    }
    if (quarantine.status !== 'EN') return { open: false, retryAfter: msLeft(quarantine) };
    return { open: true, epoch };
  }

  /** ms until the quarantine on `server` ends, or undefined when there is none (`disref status`). */
  async quarantineLeft(server: ServerPool): Promise<number | undefined> {
    const [quarantine] = await this.client.meta(server, [this.probes[1]]);
    return quarantine.status === 'EN' ? undefined : msLeft(quarantine);
  }

  /**
   * After a grant was written: does the marker still hold the epoch the
   * grant was admitted under, with no quarantine? (Else the data may have
   * been lost around the write.)
   */
  confirms(
    server: ServerPool,
    epoch: string,
    marker: MetaResponse,
    quarantine: MetaResponse,
  ): boolean {
    if (marker.status !== 'VA' || quarantine.status !== 'EN') return false;
    return this.epochOf(server, marker) === epoch;
  }

  /**
   * Checks the marker on every server this process has used (from the
   * heartbeat), so that a loss is noticed, and quarantined, even while
   * this process grants nothing. Unreachable servers are skipped.
   */
  async sweep(): Promise<void> {
    await Promise.all(
      this.client.servers
        .filter((server) => this.seen.has(server.id))
        .map(async (server) => {
          try {
            const [marker, quarantine] = await this.client.meta(server, this.probes);
            await this.admit(server, marker, quarantine);
          } catch {
            // The next operation on that server reports it.
          }
        }),
    );
  }

  /**
   * Recreates the marker after setting the quarantine. Resolves the
   * quarantine in ms (0: none) and the epoch now in the marker (undefined
   * if it vanished again).
   */
  private async recover(server: ServerPool): Promise<{ wait: number; epoch: string | undefined }> {
    const wait = this.seen.has(server.id)
      ? this.maxTtl
      : await this.quarantineAfterUnseenLoss(server);
    // Quarantine first: whoever sees the new marker also sees the quarantine.
    if (wait > 0) await this.raiseQuarantine(server, wait);
    const epoch = randomUUID();
    const [added] = await this.client.meta(server, [
      { command: 'ms', key: this.markerKey, value: epoch, flags: ['T0', 'ME'] },
    ]);
    if (added.status === 'HD') {
      this.seen.set(server.id, epoch);
      return { wait, epoch };
    }
    // Another process recreated it first (and set its own quarantine first).
    const [current] = await this.client.meta(server, [this.probes[0]]);
    if (current.status !== 'VA') return { wait, epoch: undefined };
    const theirs = this.epochOf(server, current);
    this.seen.set(server.id, theirs);
    return { wait, epoch: theirs };
  }

  /** The quarantine for a marker found missing by a process that never saw it. */
  private async quarantineAfterUnseenLoss(server: ServerPool): Promise<number> {
    const stats = await this.client.stats(server);
    const uptime = Number(stats.get('uptime'));
    const flushes = Number(stats.get('cmd_flush'));
    if (!Number.isFinite(uptime) || !Number.isFinite(flushes)) {
      throw new MemcachedServerError(server.address, 'stats lacks uptime or cmd_flush');
    }
    const upFor = Math.max(0, uptime - UPTIME_SLACK_SECONDS) * 1000;
    let wait = Math.max(0, this.maxTtl - upFor);
    if (flushes > 0) wait = this.maxTtl;
    return wait;
  }

  /** Makes the quarantine last at least `ms` from now; never shortens a longer one. */
  private async raiseQuarantine(server: ServerPool, ms: number): Promise<void> {
    const seconds = exptimeFor(ms);
    const set = (flags: string[]): MetaRequest => ({
      command: 'ms',
      key: this.quarantineKey,
      value: '1',
      flags: [`T${String(seconds)}`, ...flags],
    });
    for (let attempt = 0; attempt < MAX_QUARANTINE_ATTEMPTS; attempt++) {
      const [added] = await this.client.meta(server, [set(['ME'])]);
      if (added.status === 'HD') return;
      const [current] = await this.client.meta(server, [
        { command: 'mg', key: this.quarantineKey, flags: ['t', 'c'] },
      ]);
      if (current.status === 'EN') continue;
      const left = Number(current.flags.get('t') ?? '0');
      if (left === -1 || left >= seconds) return;
      const [swapped] = await this.client.meta(server, [
        set([`C${current.flags.get('c') ?? '0'}`]),
      ]);
      if (swapped.status === 'HD') return;
    }
    throw new MemcachedServerError(
      server.address,
      'could not set the data-loss quarantine (contention)',
    );
  }

  private epochOf(server: ServerPool, marker: MetaResponse): string {
    if (marker.value === undefined) {
      throw new MemcachedServerError(server.address, 'data-loss marker read without its value');
    }
    return marker.value.toString('utf8');
  }
}

/**
 * Writes the marker of `namespace` on every server unless one exists:
 * declares that nothing was granted there before, so a just-started server
 * is usable at once. For test servers and for operators who know a server
 * is new; never done by disref itself.
 */
export async function markNamespaceFresh(
  client: MemcachedClient,
  namespace: string,
): Promise<void> {
  const key = namespaceItem(namespace, 'epoch');
  await Promise.all(
    client.servers.map((server) =>
      client.meta(server, [{ command: 'ms', key, value: 'declared-fresh', flags: ['T0', 'ME'] }]),
    ),
  );
}
