/**
 * The state of one lock, as one memcached item, and the pure state changes
 * that acquire, extend, release and leave make to it. The backend reads the
 * item with its CAS value, applies one of these functions, and writes the
 * result back only if the CAS still matches (or with `add` when there was no
 * item), retrying a bounded number of times.
 *
 * Encoding (compact JSON, a few hundred bytes at most):
 *
 *     {"f":<last fence>,"h":[[owner,"x"|"s",fence,expiresAt],...],"w":[[owner,expiresAt],...]}
 *
 * `h` are the holders (`x` exclusive, `s` shared), `w` the exclusive waiters
 * that stop new readers from joining (so writers are not starved), `f` the
 * highest fence granted through this record, kept after the last release so
 * that fences stay ordered with grants.
 *
 * Clocks: `expiresAt` is the writer's wall clock (`Date.now()`) plus the
 * lease; memcached has no clock a client can read with ms precision. Another
 * process treats a holder as gone only {@link CLOCK_TOLERANCE} ms after
 * that, so leases stay exclusive while the clocks of the processes agree
 * within that tolerance (NTP keeps them within a few ms). The price is that
 * a lease that is neither released nor extended blocks others for up to
 * ttl + CLOCK_TOLERANCE (plus any clock difference).
 * @module
 */
import type { LockMode } from '../../backend.js';

/** ms by which the wall clocks of processes sharing a lock may disagree. */
export const CLOCK_TOLERANCE = 1_000;

export interface Holder {
  readonly owner: string;
  readonly mode: LockMode;
  readonly fence: number;
  /** Wall-clock ms (writer's clock) when the lease runs out. */
  readonly expiresAt: number;
}

export interface PendingWriter {
  readonly owner: string;
  /** Wall-clock ms when the registration lapses unless renewed. */
  readonly expiresAt: number;
}

export interface LockRecord {
  /** Highest fence granted through this record. */
  readonly fence: number;
  readonly holders: readonly Holder[];
  readonly pendingWriters: readonly PendingWriter[];
}

export const EMPTY_RECORD: LockRecord = { fence: 0, holders: [], pendingWriters: [] };

export function encodeRecord(record: LockRecord): string {
  return JSON.stringify({
    f: record.fence,
    h: record.holders.map((holder) => [
      holder.owner,
      holder.mode === 'exclusive' ? 'x' : 's',
      holder.fence,
      holder.expiresAt,
    ]),
    w: record.pendingWriters.map((writer) => [writer.owner, writer.expiresAt]),
  });
}

/** Parses an item written by {@link encodeRecord}; throws `SyntaxError` on anything else. */
export function decodeRecord(data: Buffer): LockRecord {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  if (typeof raw !== 'object' || raw === null)
    throw new SyntaxError('lock record is not an object');
  const { f, h, w } = raw as { f?: unknown; h?: unknown; w?: unknown };
  if (!isCount(f) || !Array.isArray(h) || !Array.isArray(w)) {
    throw new SyntaxError('lock record lacks f, h or w');
  }
  const holders = h.map((entry: unknown): Holder => {
    if (!Array.isArray(entry)) throw new SyntaxError('bad holder in lock record');
    const [owner, mode, fence, expiresAt] = entry as unknown[];
    if (
      typeof owner !== 'string' ||
      (mode !== 'x' && mode !== 's') ||
      !isCount(fence) ||
      !isCount(expiresAt)
    ) {
      throw new SyntaxError('bad holder in lock record');
    }
    return { owner, mode: mode === 'x' ? 'exclusive' : 'shared', fence, expiresAt };
  });
  const pendingWriters = w.map((entry: unknown): PendingWriter => {
    if (!Array.isArray(entry)) throw new SyntaxError('bad waiter in lock record');
    const [owner, expiresAt] = entry as unknown[];
    if (typeof owner !== 'string' || !isCount(expiresAt)) {
      throw new SyntaxError('bad waiter in lock record');
    }
    return { owner, expiresAt };
  });
  return { fence: f, holders, pendingWriters };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Drops holders that every process agrees have run out, and lapsed waiters. */
export function prune(record: LockRecord, now: number): LockRecord {
  return {
    fence: record.fence,
    holders: record.holders.filter((holder) => holder.expiresAt + CLOCK_TOLERANCE > now),
    // A waiter lapsing early only lets a reader in: no tolerance needed.
    pendingWriters: record.pendingWriters.filter((writer) => writer.expiresAt > now),
  };
}

export interface AcquireInput {
  readonly owner: string;
  readonly mode: LockMode;
  readonly ttl: number;
  readonly wait: boolean;
  readonly waiterTtl: number;
  /** A fence drawn from the fence counter for this attempt. */
  readonly drawnFence: number;
}

export type AcquirePlan =
  | { readonly granted: true; readonly fence: number; readonly record: LockRecord }
  | {
      readonly granted: false;
      readonly retryAfter: number;
      /** The record with this waiter registered, when it must be written. */
      readonly record: LockRecord | undefined;
    };

/** What acquiring does to the (pruned) record at wall-clock time `now`. */
export function planAcquire(current: LockRecord, input: AcquireInput, now: number): AcquirePlan {
  const record = prune(current, now);
  const { owner, mode } = input;
  const existing = record.holders.find((holder) => holder.owner === owner);
  if (existing !== undefined) {
    // The same acquisition asked twice (a retried call): keep one lease.
    return {
      granted: true,
      fence: existing.fence,
      record: withHolder(record, { ...existing, expiresAt: now + input.ttl }),
    };
  }
  const blockers = record.holders.filter(
    (holder) => mode === 'exclusive' || holder.mode === 'exclusive',
  );
  const writers =
    mode === 'shared' ? record.pendingWriters.filter((writer) => writer.owner !== owner) : [];
  if (blockers.length === 0 && writers.length === 0) {
    // Fences stay ordered with grants even if the counter was reseeded lower.
    const fence = Math.max(input.drawnFence, record.fence + 1);
    return {
      granted: true,
      fence,
      record: {
        fence,
        holders: [...record.holders, { owner, mode, fence, expiresAt: now + input.ttl }],
        pendingWriters: record.pendingWriters.filter((writer) => writer.owner !== owner),
      },
    };
  }
  let latest = 0;
  for (const holder of blockers) latest = Math.max(latest, holder.expiresAt + CLOCK_TOLERANCE);
  for (const writer of writers) latest = Math.max(latest, writer.expiresAt);
  const retryAfter = Math.max(1, Math.ceil(latest - now));
  return { granted: false, retryAfter, record: registration(record, input, now) };
}

/**
 * A writer that must wait behind readers registers, so that new readers
 * queue behind it. Behind another writer nothing can starve it (readers are
 * blocked too), so it does not write; nor when its registration is fresh.
 */
function registration(
  record: LockRecord,
  input: AcquireInput,
  now: number,
): LockRecord | undefined {
  if (!input.wait || input.mode !== 'exclusive') return undefined;
  if (!record.holders.some((holder) => holder.mode === 'shared')) return undefined;
  const mine = record.pendingWriters.find((writer) => writer.owner === input.owner);
  if (mine !== undefined && mine.expiresAt - now > input.waiterTtl / 2) return undefined;
  return {
    ...record,
    pendingWriters: [
      ...record.pendingWriters.filter((writer) => writer.owner !== input.owner),
      { owner: input.owner, expiresAt: now + input.waiterTtl },
    ],
  };
}

/** The record with `owner`'s lease reset to `ttl`, or undefined when it no longer holds. */
export function planExtend(
  current: LockRecord,
  owner: string,
  ttl: number,
  now: number,
): LockRecord | undefined {
  const holder = current.holders.find((entry) => entry.owner === owner);
  // Our own expiry, on our own clock: past it, others may already be inside.
  if (holder === undefined || holder.expiresAt <= now) return undefined;
  return withHolder(prune(current, now), { ...holder, expiresAt: now + ttl });
}

/**
 * The record without `owner` (undefined when it holds nothing), and whether
 * its lease was still running: a lease that ran out was not really held.
 */
export function planRelease(
  current: LockRecord,
  owner: string,
  now: number,
): { readonly record: LockRecord; readonly wasHeld: boolean } | undefined {
  const holder = current.holders.find((entry) => entry.owner === owner);
  if (holder === undefined) return undefined;
  const record = prune(current, now);
  return {
    record: { ...record, holders: record.holders.filter((entry) => entry.owner !== owner) },
    wasHeld: holder.expiresAt > now,
  };
}

/**
 * The record without `owner`'s waiter registration or holding (`leave` gives
 * the whole acquisition up, as on every backend), or undefined when it had none.
 */
export function planLeave(current: LockRecord, owner: string, now: number): LockRecord | undefined {
  const waiting = current.pendingWriters.some((writer) => writer.owner === owner);
  const holding = current.holders.some((holder) => holder.owner === owner);
  if (!waiting && !holding) return undefined;
  const record = prune(current, now);
  return {
    ...record,
    holders: record.holders.filter((holder) => holder.owner !== owner),
    pendingWriters: record.pendingWriters.filter((writer) => writer.owner !== owner),
  };
}

/** Wall-clock ms at which the last holder or waiter of `record` runs out (0 when none). */
export function lastExpiry(record: LockRecord): number {
  let last = 0;
  for (const holder of record.holders) last = Math.max(last, holder.expiresAt + CLOCK_TOLERANCE);
  for (const writer of record.pendingWriters) last = Math.max(last, writer.expiresAt);
  return last;
}

function withHolder(record: LockRecord, holder: Holder): LockRecord {
  return {
    ...record,
    holders: [...record.holders.filter((entry) => entry.owner !== holder.owner), holder],
  };
}
