/**
 * Reference counting on memcached: the operations of `ReferenceOperations`
 * with the semantics of the in-memory reference space
 * (`backends/memory/memory-references.ts`), built from single-item
 * compare-and-swap loops (`cas.ts`) because memcached has no transactions.
 *
 * Items (encodings in `reference-records.ts`):
 *
 * - `<ns>:r:<resource>` — holders, timesModified, completion attempts,
 *   claim and pending token of one resource, on the server that holds the
 *   resource's lock (rendezvous hashing of `<ns>:<resource>`). Every change
 *   to a resource is one compare-and-swap on this one item. Never expires;
 *   deleted when its completion finishes.
 * - `<ns>:p:<id>` — a process's heartbeat (`process-table.ts`).
 * - `<ns>:h:<id>` — the resources a process holds (`held-lists.ts`), on the
 *   server of its heartbeat.
 * - `<ns>:~processes` and `<ns>:~pending` — the registries (`registry.ts`)
 *   of processes (id, host, pid) and of resources awaiting completion
 *   (resource, pending token), both on the server that rendezvous hashing
 *   picks for `<ns>:~registry`.
 *
 * How the pieces stay consistent without multi-item atomicity: every step
 * writes first what recovery needs to find, then what depends on it, so a
 * crash between two steps leaves something a live process completes.
 *
 * - Add: the held list first (refused if the process ran out), then the
 *   resource; then the heartbeat item is read again: if the process was
 *   declared dead meanwhile (its reaper may have read the held list before
 *   the addition), the addition is pruned at once and refused.
 * - Holders are pruned only after they were marked dead in their own
 *   heartbeat item, so a pruned holder can never beat again.
 * - A resource left without live holders gets a pending token in its item,
 *   then an entry in the pending registry, and only then leaves the held
 *   list of the process that removed the last reference: if that process
 *   dies in between, its reaper finds the resource through its held list
 *   and queues it. A registry entry whose token is not the item's is stale
 *   and removed only while it still has that token, so a newer entry
 *   survives.
 * - A completion claim is an unguessable token with a wall-clock expiry in
 *   the resource item; another process takes over a claim only once it has
 *   expired by more than the clock tolerance.
 *
 * Registry server down: processes registered before keep referencing,
 * dereferencing, counting and completing resources on the other servers;
 * a pending entry that cannot be written is kept in memory and written by
 * the next recovery round (and the resource stays on the held list, which
 * covers a crash meanwhile). Registering a new process for references and
 * recovery itself fail with a `BackendError` naming the server until it is
 * back.
 *
 * Clock: `Date.now()` everywhere, with `CLOCK_TOLERANCE` (1 s) added before
 * anyone acts on another process's time (heartbeat or claim), as the lock
 * records do. Correct while the clocks of the processes agree within it.
 *
 * Not covered: memcached losing items (restart, flush, eviction) loses the
 * references in them; give disref a memcached of its own (or `-M`).
 * @module
 */
import { randomUUID } from 'node:crypto';
import {
  kindOf,
  type CompletionClaim,
  type ProcessInfo,
  type ProcessState,
  type ResourceState,
} from '../../backend.js';
import type { MemcachedClient, ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import { compareAndSwap, type Decision } from './cas.js';
import { HeldLists } from './held-lists.js';
import { itemName, namespaceItem } from './keys.js';
import { CLOCK_TOLERANCE } from './lock-record.js';
import { ProcessTable } from './process-table.js';
import type { MetaResponse } from './protocol.js';
import { Registry } from './registry.js';
import {
  decodePending,
  decodeProcesses,
  decodeResource,
  EMPTY_RESOURCE,
  encodePending,
  encodeProcesses,
  encodeResource,
  type ResourceRecord,
} from './reference-records.js';

/** Most dead processes one recovery round reaps, so that a heartbeat stays short. */
const REAP_BATCH = 16;
/** Most pending entries one claim attempt looks at. */
const CLAIM_SCAN = 32;
/** Resources of a dead process pruned at once (each is a few round trips). */
const REAP_CONCURRENCY = 8;
/** Most times a reaper re-reads a held list that kept changing under it. */
const MAX_REAP_PASSES = 5;

/** What a change to a resource item does: keep it, write `next`, or delete it (`null`). */
interface ResourceChange<T> {
  readonly result: T;
  readonly next?: ResourceRecord | null;
}

function referencePair(processId: string, resource: string): string {
  return `${processId}\n${resource}`;
}

/** The reference operations over one namespace of a memcached pool. */
export class MemcachedReferences {
  private readonly client: MemcachedClient;
  private readonly namespace: string;
  private readonly processes: ProcessTable;
  private readonly held: HeldLists;
  private readonly registered: Registry<ProcessInfo>;
  private readonly pending: Registry<string>;
  /**
   * Processes of this backend that it believes live, and whether they are
   * in the process registry: a first heartbeat does not wait for the
   * registry's server (a lock-only process needs none), but a process is
   * registered before it takes its first reference, and a reaper puts it
   * back if the registry lost it (eviction), so it stays recoverable.
   */
  private readonly local = new Map<string, { info: ProcessInfo; registered: boolean }>();
  /**
   * Pending registrations that failed because the registry's server was
   * unreachable or too contended, per resource: the token, and the process
   * whose held list still names the resource for it. Retried at every
   * recovery round, so a completion that failed during the outage is still
   * retried while this process lives (its held list covers the case where
   * it dies); once written, the resource leaves that held list.
   */
  private readonly unqueued = new Map<string, { token: string; processId?: string }>();
  /**
   * (process, resource) pairs a reference is being taken or held for here.
   * A held-list removal left over from an earlier reference must not drop
   * the entry a newer one relies on: it is skipped while the pair is here.
   * Changes to one held list apply in the order they were asked for, so
   * checking this right before asking suffices.
   */
  private readonly referencedHere = new Set<string>();

  constructor(client: MemcachedClient, namespace: string) {
    this.client = client;
    this.namespace = namespace;
    this.processes = new ProcessTable(client, namespace);
    this.held = new HeldLists(client, namespace, this.processes);
    const server = client.serverFor(`${namespace}:~registry`);
    this.registered = new Registry({
      client,
      server,
      key: namespaceItem(namespace, 'processes'),
      what: 'process registry',
      encode: encodeProcesses,
      decode: decodeProcesses,
      same: (a, b) => a.host === b.host && a.pid === b.pid,
    });
    this.pending = new Registry({
      client,
      server,
      key: namespaceItem(namespace, 'pending'),
      what: 'pending registry',
      encode: encodePending,
      decode: decodePending,
      same: (a, b) => a === b,
    });
  }

  /** The server of the namespace's registries (named in errors when it is down). */
  get registryServer(): ServerPool {
    return this.registered.server;
  }

  async beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    if (!(await this.processes.beat(processId, ttl, first))) {
      this.local.delete(processId);
      return false;
    }
    if (first) {
      this.local.set(processId, { info, registered: false });
      try {
        // After the heartbeat item: a reaper never sees a registered process without one.
        await this.register(processId);
      } catch (error) {
        // The registry's server is down: locks work regardless; addReference retries.
        if (!(error instanceof MemcachedServerError)) throw error;
      }
    }
    return true;
  }

  /** A process that closed: dead at once; unregistered unless a reaper must prune what it held. */
  async removeProcess(processId: string): Promise<void> {
    this.local.delete(processId);
    for (const pair of this.referencedHere) {
      if (pair.startsWith(`${processId}\n`)) this.referencedHere.delete(pair);
    }
    // Best effort: what is queued now leaves the held list, so the process can unregister.
    await this.writeUnqueued(processId).catch(() => undefined);
    await this.processes.remove(processId);
    const { resources } = await this.held.read(processId);
    if (resources.length === 0) await this.registered.remove(processId);
  }

  async addReference(resource: string, processId: string): Promise<boolean> {
    const pair = referencePair(processId, resource);
    this.referencedHere.add(pair);
    try {
      if (await this.addReferenceOnce(resource, processId)) return true;
    } catch (error) {
      this.referencedHere.delete(pair);
      throw error;
    }
    this.referencedHere.delete(pair);
    return false;
  }

  private async addReferenceOnce(resource: string, processId: string): Promise<boolean> {
    // Unregistered, its death would go unnoticed and this resource never complete.
    await this.register(processId);
    if (!(await this.held.add(processId, resource))) return false;
    await this.changeResource(resource, (record) => {
      const current = record ?? EMPTY_RESOURCE;
      if (current.holders.includes(processId)) return { result: undefined };
      const holders = [...current.holders, processId];
      // Referenced while a claim is out: the next lifetime begins (see finishCompletion).
      return {
        result: undefined,
        next: { ...current, holders, reopened: current.reopened || current.claim !== undefined },
      };
    });
    if (await this.processes.isGone(processId)) {
      // Declared dead while we added: its reaper may have missed this resource.
      await this.prune(resource, true);
      await this.held.remove(processId, resource);
      return false;
    }
    return true;
  }

  async removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    interface Outcome {
      readonly removed: boolean;
      readonly claim: CompletionClaim | null;
      /** Set when no live holder is left: the resource must be in the pending registry. */
      readonly pending: string | undefined;
    }
    this.referencedHere.delete(referencePair(processId, resource));
    const outcome = await this.changeResource<Outcome>(resource, async (record, now) => {
      const none: Outcome = { removed: false, claim: null, pending: undefined };
      if (record?.holders.includes(processId) !== true) return { result: none };
      const others = record.holders.filter((holder) => holder !== processId);
      const dead = await this.processes.deadAmong(others, now);
      const holders = others.filter((holder) => !dead.has(holder));
      if (holders.length > 0) {
        return { result: { ...none, removed: true }, next: { ...record, holders } };
      }
      const pending = record.pending ?? randomUUID();
      if (record.claim !== undefined && record.claim.expiresAt + CLOCK_TOLERANCE > now) {
        // Someone else is completing (an earlier lifetime's retry): it finishes or retries.
        return {
          result: { removed: true, claim: null, pending },
          next: { ...record, holders, pending },
        };
      }
      const claim = this.newClaim(resource, record);
      return {
        result: { removed: true, claim, pending },
        next: this.claimed(record, claim, now + claimTtl, pending),
      };
    });
    // Leaves the held list only once queued: if this process dies first, its reaper queues it.
    if (
      outcome.pending === undefined ||
      (await this.queue(resource, outcome.pending, true, processId))
    ) {
      await this.leaveHeldList(processId, resource);
    }
    return { removed: outcome.removed, claim: outcome.claim };
  }

  async countReferences(resource: string): Promise<number> {
    return this.prune(resource, false);
  }

  incrementTimesModified(resource: string, by: number): Promise<number> {
    return this.changeResource(resource, (record) => {
      const current = record ?? EMPTY_RESOURCE;
      const timesModified = current.timesModified + by;
      return { result: timesModified, next: { ...current, timesModified } };
    });
  }

  async timesModified(resource: string): Promise<number> {
    const { server, key } = this.locate(resource);
    const [item] = await this.client.meta(server, [{ command: 'mg', key, flags: ['v'] }]);
    return this.decode(resource, item)?.timesModified ?? 0;
  }

  extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return this.changeResource(claim.resource, (record, now) => {
      if (record?.claim?.token !== claim.token) return { result: false };
      return {
        result: true,
        next: { ...record, claim: { token: claim.token, expiresAt: now + ttl } },
      };
    });
  }

  async finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    interface Outcome {
      readonly finished: boolean;
      /** The pending token: its registry entry is dropped, or (due) kept queued. */
      readonly pending: string | undefined;
      /** A next lifetime began and ended while the completion ran: its completion is due. */
      readonly due: boolean;
    }
    const outcome = await this.changeResource<Outcome>(claim.resource, (record) => {
      if (record?.claim?.token !== claim.token) {
        return { result: { finished: false, pending: undefined, due: false } };
      }
      const { holders, pending } = record;
      // (Holders without `reopened`: a record written before that field existed.)
      if (!record.reopened && holders.length === 0) {
        return { result: { finished: true, pending, due: false }, next: null };
      }
      // Referenced while the completion ran: that next lifetime keeps its holders and
      // what was modified beyond what the completion saw.
      const due = holders.length === 0;
      const next: ResourceRecord = {
        ...EMPTY_RESOURCE,
        holders,
        timesModified: Math.max(0, record.timesModified - seenModified),
        pending: due ? pending : undefined,
      };
      return { result: { finished: true, pending, due }, next };
    });
    const pending = outcome.pending;
    if (outcome.due && pending !== undefined) {
      // Queued already when that lifetime's last holder left; make sure, as recovery starts there.
      await this.queue(claim.resource, pending, true);
    } else if (pending !== undefined) {
      const unqueued = this.unqueued.get(claim.resource);
      if (unqueued?.token === pending) {
        // Never queued, now done: the held list that covered it meanwhile lets go.
        this.unqueued.delete(claim.resource);
        if (unqueued.processId !== undefined) {
          await this.leaveHeldList(unqueued.processId, claim.resource);
        }
      }
      try {
        await this.pending.remove(claim.resource, (token) => token === pending);
      } catch (error) {
        // The completion is done: a stale entry left behind is dropped by a later claim.
        if (!(error instanceof MemcachedServerError)) throw error;
      }
    }
    return outcome.finished;
  }

  async abandonCompletion(claim: CompletionClaim): Promise<void> {
    const pending = await this.changeResource(claim.resource, (record) => {
      if (record?.claim?.token !== claim.token) return { result: undefined };
      return { result: record.pending, next: { ...record, claim: undefined } };
    });
    // Normally queued already when it was claimed; make sure, since recovery starts there.
    if (pending !== undefined) await this.queue(claim.resource, pending, true);
  }

  async reapDeadProcesses(): Promise<number> {
    await this.writeUnqueued();
    const registered = await this.registered.read();
    for (const [id, entry] of this.local) {
      if (!registered.has(id)) {
        entry.registered = false;
        await this.register(id);
      }
    }
    const dead = await this.processes.deadAmong([...registered.keys()], Date.now());
    // Live processes reaping together mostly take different ones first.
    const batch = shuffle([...dead]).slice(0, REAP_BATCH);
    for (const processId of batch) await this.reap(processId);
    return batch.length;
  }

  async claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    const wanted = [...(await this.pending.read())].filter(([resource]) =>
      kinds.includes(kindOf(resource)),
    );
    // Start at a random place, so that live processes share the work.
    const start = Math.floor(Math.random() * wanted.length);
    const order = [...wanted.slice(start), ...wanted.slice(0, start)].slice(0, CLAIM_SCAN);
    for (const [resource, token] of order) {
      const outcome = await this.changeResource(
        resource,
        async (record, now): Promise<ResourceChange<CompletionClaim | 'stale' | null>> => {
          if (record?.pending !== token) return { result: 'stale' };
          if (record.claim !== undefined && record.claim.expiresAt + CLOCK_TOLERANCE > now) {
            return { result: null };
          }
          const dead = await this.processes.deadAmong(record.holders, now);
          const holders = record.holders.filter((holder) => !dead.has(holder));
          if (holders.length > 0) {
            // New holders came: the last of them to leave claims it.
            return dead.size === 0
              ? { result: null }
              : { result: null, next: { ...record, holders } };
          }
          const claim = this.newClaim(resource, record);
          return { result: claim, next: this.claimed(record, claim, now + claimTtl, token) };
        },
      );
      if (outcome === 'stale') {
        try {
          await this.pending.remove(resource, (current) => current === token);
        } catch (error) {
          // Only tidying: a registry too contended or unreachable now is tidied next round.
          if (!(error instanceof MemcachedServerError)) throw error;
        }
      } else if (outcome !== null) {
        return outcome;
      }
    }
    return null;
  }

  /**
   * What can be found without listing keys: registered processes, and the
   * resources they hold or that await completion.
   */
  async snapshot(): Promise<{ processes: ProcessState[]; references: ResourceState[] }> {
    const [registered, pending] = await Promise.all([this.registered.read(), this.pending.read()]);
    const ids = [...registered.keys()];
    const [beats, lists] = await Promise.all([
      this.processes.read(ids, false),
      Promise.all(ids.map((id) => this.held.read(id))),
    ]);
    const now = Date.now();
    const processes = ids.map((id): ProcessState => {
      const record = beats.get(id)?.record;
      return {
        id,
        info: registered.get(id),
        ttlLeft: record === undefined || record.dead ? 0 : record.expiresAt - now,
        heartbeatAge: record === undefined ? undefined : Math.max(0, now - record.lastBeat),
      };
    });
    const names = new Set([...pending.keys(), ...lists.flatMap((list) => list.resources)]);
    const records = await Promise.all(
      [...names].map(async (resource) => {
        const { server, key } = this.locate(resource);
        const [item] = await this.client.meta(server, [{ command: 'mg', key, flags: ['v'] }]);
        return [resource, this.decode(resource, item)] as const;
      }),
    );
    const references = records.flatMap(([resource, record]): ResourceState[] =>
      record === undefined
        ? []
        : [
            {
              resource,
              holders: record.holders,
              timesModified: record.timesModified,
              completing: record.pending !== undefined,
            },
          ],
    );
    return { processes, references };
  }

  /** Puts a process of this backend into the registry unless it is there already. */
  private async register(processId: string): Promise<void> {
    const entry = this.local.get(processId);
    if (entry === undefined || entry.registered) return;
    await this.registered.put(processId, entry.info);
    entry.registered = true;
  }

  /**
   * Reaps one dead process: prunes every resource on its held list (queuing
   * those left without live holders), then deletes the list and its
   * registration. Safe to run by several processes at once, and again after
   * a crash half-way.
   */
  private async reap(processId: string): Promise<void> {
    for (let pass = 0; pass < MAX_REAP_PASSES; pass++) {
      const { resources, cas } = await this.held.read(processId);
      for (let i = 0; i < resources.length; i += REAP_CONCURRENCY) {
        await Promise.all(
          resources.slice(i, i + REAP_CONCURRENCY).map((resource) => this.prune(resource, true)),
        );
      }
      if (await this.held.deleteIf(processId, cas)) {
        await this.registered.remove(processId);
        this.local.delete(processId);
        return;
      }
    }
    throw new MemcachedServerError(
      this.processes.serverOf(processId).address,
      `held list of dead process ${processId} kept changing; it will be reaped next round`,
    );
  }

  /**
   * Drops the dead holders of `resource`; one left without a live holder
   * becomes completing and is queued (`requeue`: also when it was already
   * completing, to repair an entry that a crash kept from being written).
   * Resolves the live holders.
   */
  private async prune(resource: string, requeue: boolean): Promise<number> {
    const outcome = await this.changeResource(resource, async (record, now) => {
      if (record === undefined) return { result: { live: 0, pending: undefined } };
      const dead = await this.processes.deadAmong(record.holders, now);
      const holders = record.holders.filter((holder) => !dead.has(holder));
      if (holders.length > 0) {
        const result = { live: holders.length, pending: undefined };
        return dead.size === 0 ? { result } : { result, next: { ...record, holders } };
      }
      const pending = record.pending ?? randomUUID();
      const queue = requeue || record.pending === undefined;
      const result = { live: 0, pending: queue ? pending : undefined };
      if (dead.size === 0 && record.pending !== undefined) return { result };
      return { result, next: { ...record, holders, pending } };
    });
    // A reaper must not delete the held list unless this is queued: no tolerance then.
    if (outcome.pending !== undefined) await this.queue(resource, outcome.pending, !requeue);
    return outcome.live;
  }

  /**
   * Puts `resource` into the pending registry. With `tolerate`, an
   * unreachable registry server is not an error: the entry is kept here and
   * written by a later recovery round. Resolves whether it was written.
   */
  private async queue(
    resource: string,
    token: string,
    tolerate: boolean,
    processId?: string,
  ): Promise<boolean> {
    // The held list still covering an earlier attempt that failed, if any.
    const owed = processId ?? this.unqueued.get(resource)?.processId;
    try {
      await this.pending.put(resource, token);
    } catch (error) {
      if (!tolerate || !(error instanceof MemcachedServerError)) throw error;
      this.unqueued.set(resource, owed === undefined ? { token } : { token, processId: owed });
      return false;
    }
    const earlier = this.unqueued.get(resource);
    this.unqueued.delete(resource);
    // Queued now: that held list lets go (a caller passing its own process does it itself).
    if (earlier?.processId !== undefined && earlier.processId !== processId) {
      await this.leaveHeldList(earlier.processId, resource);
    }
    return true;
  }

  /**
   * Writes the pending registrations that failed before (those left by
   * `processId` only, when given), and takes each resource off the held
   * list that kept it meanwhile. One that fails again stays for the next
   * round.
   */
  private async writeUnqueued(processId?: string): Promise<void> {
    for (const [resource, entry] of [...this.unqueued]) {
      if (processId !== undefined && entry.processId !== processId) continue;
      try {
        await this.pending.put(resource, entry.token);
      } catch (error) {
        // Still unreachable or contended: kept for the next round, as before.
        if (error instanceof MemcachedServerError) continue;
        throw error;
      }
      if (this.unqueued.get(resource) === entry) this.unqueued.delete(resource);
      if (entry.processId !== undefined) await this.leaveHeldList(entry.processId, resource);
    }
  }

  /** Takes `resource` off the held list of `processId`, unless a newer reference needs it there. */
  private async leaveHeldList(processId: string, resource: string): Promise<void> {
    if (this.referencedHere.has(referencePair(processId, resource))) return;
    await this.held.remove(processId, resource);
  }

  private newClaim(resource: string, record: ResourceRecord): CompletionClaim {
    return { resource, token: randomUUID(), attempt: record.attempts + 1 };
  }

  private claimed(
    record: ResourceRecord,
    claim: CompletionClaim,
    expiresAt: number,
    pending: string,
  ): ResourceRecord {
    return {
      ...record,
      holders: [],
      attempts: claim.attempt,
      claim: { token: claim.token, expiresAt },
      pending,
      // Claimed only once no live holder is left: it covers every reference so far.
      reopened: false,
    };
  }

  /** One compare-and-swap loop on the resource item. */
  private changeResource<T>(
    resource: string,
    decide: (
      record: ResourceRecord | undefined,
      now: number,
    ) => ResourceChange<T> | Promise<ResourceChange<T>>,
  ): Promise<T> {
    const { server, key } = this.locate(resource);
    return compareAndSwap(
      this.client,
      { server, key, exptime: 0, what: `resource ${resource}` },
      async (item, _also, now): Promise<Decision<T>> => {
        const { result, next } = await decide(this.decode(resource, item), now);
        if (next === undefined) return { kind: 'keep', result };
        if (next === null) return { kind: 'delete', result };
        return { kind: 'set', value: encodeResource(next), result };
      },
    );
  }

  private locate(resource: string): { server: ServerPool; key: string } {
    return {
      // The server of the resource's lock: one resource, one server.
      server: this.client.serverFor(`${this.namespace}:${resource}`),
      key: itemName(this.namespace, 'r', resource),
    };
  }

  private decode(resource: string, item: MetaResponse): ResourceRecord | undefined {
    if (item.status !== 'VA' || item.value === undefined) return undefined;
    try {
      return decodeResource(item.value);
    } catch (error) {
      throw new MemcachedServerError(
        this.locate(resource).server.address,
        `item ${this.locate(resource).key} is not a disref resource record (${String(error)}); another application may use this namespace`,
        { cause: error },
      );
    }
  }
}

/** Fisher-Yates, in place. */
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
