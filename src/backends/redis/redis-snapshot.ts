/**
 * What a namespace holds on Redis, for `disref status`: SCAN finds the
 * namespace's lock and resource hashes (bounded steps, never KEYS, which
 * blocks the server), the existing scripts read each one, and the process
 * registry is read whole.
 * @module
 */
import type {
  HolderState,
  LockMode,
  LockState,
  ProcessState,
  ResourceState,
  StoreSnapshot,
} from '../../backend.js';
import { longestQuarantine } from '../../backend.js';
import { BackendError } from '../../errors.js';
import { markerKey, namespacePrefix, processesKey } from './keys.js';
import { isUnreadableData } from './client.js';
import type { ScriptRunner } from './redis-references.js';
import type { LuaScripts } from './scripts.js';

/** What {@link takeSnapshot} needs from the backend. */
export interface SnapshotSource extends ScriptRunner {
  readonly namespace: string;
  readonly scripts: LuaScripts;
  /** Redis Cluster: each slot has its own data-loss marker (includes/slot-marker.lua). */
  readonly slotMarkers: boolean;
  /** One SCAN step (see `RedisConnection.scan`). */
  scan(cursor: string, pattern: string, count: number): Promise<[string, string[]]>;
}

/** Keys SCAN looks at per step: large enough to be quick, small enough not to stall the server. */
const SCAN_COUNT = 500;
/** Most SCAN steps: about a million keys looked at, on a server shared with much else. */
const MAX_SCAN_STEPS = 2_000;
/** Most locks and resources listed; status is for people, who cannot read more. */
const MAX_LISTED = 10_000;
/** Hashes read at once (pipelined on the one connection). */
const READ_CONCURRENCY = 50;

/**
 * A lock's state from the `inspect-2` reply, or null when it is free.
 * `key` names it unless the lock hash stored the key (hashed key names).
 */
export function parseLockState(reply: unknown, key: string): LockState | null {
  if (!Array.isArray(reply)) return null;
  const [waiters, stored, ...flat] = reply as unknown[];
  const holders: HolderState[] = [];
  for (let i = 0; i + 3 < flat.length; i += 4) {
    holders.push({
      owner: String(flat[i]),
      mode: String(flat[i + 1]) as LockMode,
      fence: Number(flat[i + 2]),
      ttlLeft: Number(flat[i + 3]),
    });
  }
  const name = typeof stored === 'string' && stored !== '' ? stored : key;
  return { key: name, holders, waiters: Number(waiters) };
}

/**
 * Locks (whose key starts with `prefix`), references (whose resource does) and
 * processes of `source.namespace`. Not one atomic view: each lock and
 * resource is read atomically, one after another.
 */
export async function takeSnapshot(prefix: string, source: SnapshotSource): Promise<StoreSnapshot> {
  const { lockKeys, referenceKeys, slotMarkerKeys, incomplete } = await scanNamespace(
    source,
    prefix,
  );
  // A key holding what disref cannot read is named in `incomplete`, not fatal to the listing.
  const unreadable: string[] = [];
  const skipUnreadable =
    <T>(read: (key: string) => Promise<T>) =>
    async (key: string): Promise<T | null> => {
      try {
        return await read(key);
      } catch (error) {
        if (!(error instanceof BackendError && isUnreadableData(error.cause))) throw error;
        unreadable.push(key);
        return null;
      }
    };
  const locks = await mapLimited(
    lockKeys,
    skipUnreadable((lockKey) => readLock(source, lockKey)),
  );
  const references = await mapLimited(
    referenceKeys,
    skipUnreadable((refKey) => readReference(source, refKey)),
  );
  // What holds grants back: the namespace's marker, or on a Cluster each slot's.
  const quarantines = await mapLimited(
    source.slotMarkers ? slotMarkerKeys : [markerKey(source.namespace)],
    skipUnreadable(async (marker) =>
      Number(await source.run(source.scripts.quarantineLeft, [marker], [], undefined)),
    ),
  );
  const notes = [
    ...(incomplete === undefined ? [] : [incomplete]),
    ...(unreadable.length === 0
      ? []
      : [
          `${String(unreadable.length)} key(s) hold values disref cannot read and are not shown ` +
            `(${unreadable.slice(0, 5).join(', ')}${unreadable.length > 5 ? ', ...' : ''}); ` +
            'delete them (DEL), or give disref a namespace of its own',
        ]),
  ];
  // Hashed names could not be told apart by their keys: they are filtered once read.
  return {
    locks: locks.filter((lock): lock is LockState => lock?.key.startsWith(prefix) === true),
    references: references.filter(
      (ref): ref is ResourceState => ref?.resource.startsWith(prefix) === true,
    ),
    processes: await readProcesses(source),
    incomplete: notes.length === 0 ? undefined : notes.join('; '),
    quarantineLeft: longestQuarantine(quarantines),
  };
}

/**
 * The namespace's lock hashes (`NS:{k:..}:lock`) and resource hashes
 * (`NS:{r:..}:ref`) whose key or resource starts with `prefix` (all hashed
 * ones, `{h:..}` and `{rh:..}`, whose names only their hash holds) and, on
 * Redis Cluster, slot markers (`NS:{m:..}:marker`).
 */
async function scanNamespace(
  source: SnapshotSource,
  prefix: string,
): Promise<{
  lockKeys: string[];
  referenceKeys: string[];
  slotMarkerKeys: string[];
  incomplete: string | undefined;
}> {
  // Lock and resource keys start `NS:{`; namespace-wide keys start `{NS}:`, so they never match.
  const pattern = `${escapeGlob(source.namespace)}:{*`;
  const lockPrefix = `${source.namespace}:{k:${prefix}`;
  const referencePrefix = `${source.namespace}:{r:${prefix}`;
  const hashedLock = `${source.namespace}:{h:`;
  const hashedReference = `${source.namespace}:{rh:`;
  const lockKeys = new Set<string>();
  const referenceKeys = new Set<string>();
  const slotMarkerKeys = new Set<string>();
  let cursor = '0';
  for (let step = 0; ; step++) {
    const [next, keys] = await source.scan(cursor, pattern, SCAN_COUNT);
    // SCAN may return a key twice; the sets keep one.
    for (const key of keys) {
      if (key.endsWith('}:lock')) {
        if (key.startsWith(lockPrefix) || key.startsWith(hashedLock)) lockKeys.add(key);
      } else if (key.endsWith('}:ref')) {
        if (key.startsWith(referencePrefix) || key.startsWith(hashedReference)) {
          referenceKeys.add(key);
        }
      } else if (key.endsWith('}:marker')) slotMarkerKeys.add(key);
    }
    cursor = next;
    const found = {
      lockKeys: [...lockKeys],
      referenceKeys: [...referenceKeys],
      slotMarkerKeys: [...slotMarkerKeys],
    };
    if (cursor === '0') return { ...found, incomplete: undefined };
    const listed = lockKeys.size + referenceKeys.size;
    if (listed >= MAX_LISTED || step + 1 >= MAX_SCAN_STEPS) {
      return {
        ...found,
        incomplete:
          listed >= MAX_LISTED
            ? `stopped after ${String(listed)} locks and resources; pass a PREFIX to narrow the listing down`
            : `stopped after looking at ${String(MAX_SCAN_STEPS * SCAN_COUNT)} keys of the server; some locks and resources are not shown`,
      };
    }
  }
}

async function readLock(source: SnapshotSource, lockKey: string): Promise<LockState | null> {
  const base = lockKey.slice(0, -':lock'.length);
  const reply = await source.run(
    source.scripts.inspect,
    [lockKey, `${base}:queue`],
    [`${base}:released`],
    undefined,
  );
  // `NS:{k:KEY}:lock` carries the key; a hashed one (`{h:HEX}`) stores it in the hash.
  const tag = base.slice(source.namespace.length + 2, -1);
  return parseLockState(reply, tag.startsWith('k:') ? tag.slice(2) : lockKey);
}

async function readReference(
  source: SnapshotSource,
  refKey: string,
): Promise<ResourceState | null> {
  const reply = await source.run(source.scripts.readReference, [refKey], [], undefined);
  if (!Array.isArray(reply)) return null;
  const [resource, timesModified, completing, ...holders] = source.expectArray(reply, 3, refKey);
  return {
    resource: String(resource),
    holders: holders.map(String),
    timesModified: Number(timesModified),
    completing: Number(completing) === 1,
  };
}

async function readProcesses(source: SnapshotSource): Promise<ProcessState[]> {
  const reply = await source.run(
    source.scripts.readProcesses,
    [processesKey(source.namespace)],
    [namespacePrefix(source.namespace)],
    undefined,
  );
  const [now, ...flat] = source.expectArray(reply, 1, processesKey(source.namespace)).map(String);
  const processes: ProcessState[] = [];
  for (let i = 0; i + 4 < flat.length; i += 5) {
    const [id, expiresAt, beat, host, pid] = flat.slice(i, i + 5) as [
      string,
      string,
      string,
      string,
      string,
    ];
    processes.push({
      id,
      info: host === '' ? undefined : { host, pid: Number(pid) },
      ttlLeft: Math.max(0, Number(expiresAt) - Number(now)),
      heartbeatAge: beat === '' ? undefined : Number(now) - Number(beat),
    });
  }
  return processes;
}

/** `text` matched literally by a SCAN glob pattern. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** `map` with at most {@link READ_CONCURRENCY} calls in flight. */
async function mapLimited<T, R>(items: readonly T[], map: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += READ_CONCURRENCY) {
    results.push(...(await Promise.all(items.slice(i, i + READ_CONCURRENCY).map(map))));
  }
  return results;
}
