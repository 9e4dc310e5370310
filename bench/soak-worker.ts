/**
 * One worker process of the soak run (bench/soak-run.ts). Connects
 * `instances` Disref instances to the store (one per process on Redis and
 * memcached; several in one process on memory, where they share the store),
 * prints `ready`, waits for `go` on stdin, then runs `concurrency` callers
 * per instance for `seconds`, each picking a random operation on a random key
 * out of `keys`: a mutex, tryAcquire, a nested reentrant lock, the two sides
 * of a read/write lock, a long `using` that must be extended, and a reference
 * cycle (reference, incrementTimesModified, dereference with a completion).
 *
 * Every `sampleMs` it prints a JSON `sample` line: operations so far, latency
 * percentiles, heap and RSS after a forced GC (run it with --expose-gc) and
 * the active resources by type. At the end it waits for the callers, lets
 * lingering timers lapse, counts the active resources again, closes every
 * instance and prints one `result` line, including what the leak census
 * (test/harness/alive-after.ts, enabled for the whole run) saw alive after
 * close(). Nothing per operation is kept, so the heap stays flat unless
 * disref leaks.
 */
import { createHistogram, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, LockTimeoutError, type Disref, type Lease } from '../src/index.js';
import { aliveAfter } from '../test/harness/alive-after.js';
import { emptyReferenceTally } from './soak-run.js';
import type { OperationKind, WorkerConfig, WorkerResult, WorkerSample } from './soak-run.js';

const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run the soak worker with --expose-gc');
const collect: () => void = gc;

/** Streams (created lazily by Node) are made before the census starts, so it does not count them. */
const output = process.stdout;
const input = process.stdin;

function send(line: object): void {
  output.write(`${JSON.stringify(line)}\n`);
}

/** Active resources (process.getActiveResourcesInfo) counted by type. */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

function memory(): { heapUsed: number; rss: number } {
  collect();
  const { heapUsed, rss } = process.memoryUsage();
  return { heapUsed, rss };
}

/**
 * Operations and their share of the mix (out of 100). The first caller of
 * each instance runs only `extended` (a long hold that must be extended), so
 * the others are not slowed down by it.
 */
const MIX: readonly [OperationKind, number][] = [
  ['lock', 24],
  ['tryAcquire', 10],
  ['rlock', 10],
  ['read', 14],
  ['write', 10],
  ['reference', 32],
];
/** ttl of the `extended` operation, and how long it holds the lock (so it must be extended twice). */
const EXTENDED_TTL = 3_000;
const EXTENDED_HOLD = 7_000;
/** Lingering timers (wake-up subscriptions kept 1 s after the last waiter) lapse within this. */
const SETTLE_MS = 2_500;

function pick(): OperationKind {
  let roll = Math.random() * 100;
  for (const [kind, weight] of MIX) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return 'lock';
}

const histogram = createHistogram();
const operations: Record<string, number> = {};
const timeouts: Record<string, number> = {};
/** Unexpected errors by message (bounded: the first 20 distinct messages). */
const errors: Record<string, number> = {};
let errorCount = 0;
let backgroundErrors = 0;
let warnings = 0;
/** Exclusive sections that overlapped another section on the same key in this process. */
let exclusionViolations = 0;
const tally = emptyReferenceTally();

process.on('warning', (warning) => {
  warnings += 1;
  remember('warning', warning);
});

/** Counts `error` by message, under `where` (the first 20 distinct messages). */
function remember(where: string, error: unknown): void {
  let message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  if (error instanceof Error && error.cause instanceof Error)
    message += ` (${error.cause.message})`;
  message = `${where}: ${message}`;
  if (message in errors || Object.keys(errors).length < 20) {
    errors[message] = (errors[message] ?? 0) + 1;
  }
}

function recordError(error: unknown): void {
  errorCount += 1;
  remember('operation', error);
}

/** Who is inside which key in this process: -1 for a writer, else the number of readers. */
const inside = new Map<string, number>();

function enter(key: string, shared: boolean): void {
  const now = inside.get(key) ?? 0;
  if (shared ? now < 0 : now !== 0) exclusionViolations += 1;
  inside.set(key, shared ? Math.max(now, 0) + 1 : -1);
}

function leave(key: string, shared: boolean): void {
  const now = inside.get(key) ?? 0;
  if (shared && now > 1) inside.set(key, now - 1);
  else inside.delete(key);
}

async function section(key: string, shared: boolean, hold?: number): Promise<void> {
  enter(key, shared);
  try {
    if (hold === undefined) await new Promise(setImmediate);
    else await sleep(hold);
  } finally {
    leave(key, shared);
  }
}

/** Resources a caller of this instance is cycling through now (one reference per process and resource). */
const cycling = new Set<string>();

async function referenceCycle(disref: Disref, instance: number, k: number): Promise<void> {
  const resource = `soak:${String(k)}`;
  const mine = `${String(instance)}/${resource}`;
  if (cycling.has(mine)) return;
  cycling.add(mine);
  try {
    const reference = await disref.reference(resource);
    try {
      await reference.incrementTimesModified();
      tally.increments += 1;
      if (k % 4 === 0) await reference.count();
      let ran = 0;
      const last = await reference.dereference((_resource, info) => {
        ran += 1;
        tally.callbacks += 1;
        tally.completedTimesModified += info.timesModified;
        if (info.attempt > 1) tally.retriedCompletions += 1;
      });
      tally.cycles += 1;
      if (last) tally.last += 1;
      if (ran !== (last ? 1 : 0)) tally.callbackMismatches += 1;
    } finally {
      if (reference.held) await reference.dereference();
    }
  } finally {
    cycling.delete(mine);
  }
}

async function operation(disref: Disref, instance: number, kind: OperationKind): Promise<void> {
  const k = Math.floor(Math.random() * config.keys);
  const timeout = config.timeoutMs;
  switch (kind) {
    case 'lock': {
      const key = `m:${String(k)}`;
      const lease = await disref.lock(key).acquire({ timeout });
      try {
        await section(key, false);
      } finally {
        await lease.release();
      }
      return;
    }
    case 'tryAcquire': {
      const key = `m:${String(k)}`;
      const lease: Lease | null = await disref.lock(key).tryAcquire();
      if (lease === null) return;
      try {
        await section(key, false);
      } finally {
        await lease.release();
      }
      return;
    }
    case 'rlock': {
      const key = `r:${String(k)}`;
      const lock = disref.rlock(key);
      await lock.using(
        async () => {
          await lock.using(() => section(key, false), { timeout });
        },
        { timeout },
      );
      return;
    }
    case 'read':
    case 'write': {
      const key = `rw:${String(k)}`;
      const rw = disref.rwlock(key);
      const shared = kind === 'read';
      await (shared ? rw.read() : rw.write()).using(() => section(key, shared), { timeout });
      return;
    }
    case 'extended': {
      const key = `x:${String(k)}`; // keys of their own: others would wait behind the long hold
      await disref.lock(key, { ttl: EXTENDED_TTL }).using(
        async (lease) => {
          await section(key, false, EXTENDED_HOLD);
          lease.check(); // LockLostError if no extension kept it
        },
        { timeout },
      );
      return;
    }
    case 'reference':
      await referenceCycle(disref, instance, k);
      return;
  }
}

function percentiles(): { p50: number; p99: number; max: number } {
  if (histogram.count === 0) return { p50: 0, p99: 0, max: 0 };
  return {
    p50: histogram.percentile(50) / 1e6,
    p99: histogram.percentile(99) / 1e6,
    max: histogram.max / 1e6,
  };
}

let handlesStart: Record<string, number> = {};
let handlesEnd: Record<string, number> = {};
let startedAt = 0;
let loadSeconds = 0;

const alive = await (
  config.census ? aliveAfter : (run: () => Promise<void>) => run().then(() => [])
)(async () => {
  const disrefs = await Promise.all(
    Array.from({ length: config.instances }, () =>
      connect({
        url: config.url,
        namespace: config.namespace,
        heartbeatInterval: config.heartbeatInterval,
        processTtl: config.processTtl,
        defaults: { ttl: 10_000 },
        onError: (error) => {
          backgroundErrors += 1;
          remember('background', error);
        },
      }),
    ),
  );
  for (const disref of disrefs) {
    // Lifetimes that ended while the previous completion ran are completed by recovery.
    disref.onComplete('soak', (_resource, info) => {
      tally.completedTimesModified += info.timesModified;
      if (info.attempt > 1) tally.retriedCompletions += 1;
      else tally.queuedCompletions += 1;
    });
  }
  send({ type: 'ready' });
  const lines = createInterface({ input });
  await new Promise<void>((resolve) => {
    lines.once('line', () => {
      resolve();
    });
  });
  lines.close();
  input.destroy();

  const before = memory();
  handlesStart = resources();
  startedAt = performance.now();
  const ends = startedAt + config.seconds * 1000;
  let done = 0;
  const sample = (): WorkerSample => ({
    type: 'sample',
    t: (performance.now() - startedAt) / 1000,
    operations: done,
    ...percentiles(),
    ...memory(),
    resources: resources(),
  });
  send({ ...sample(), ...before, resources: handlesStart });
  const sampler = setInterval(() => {
    send(sample());
  }, config.sampleMs);

  await Promise.all(
    disrefs.flatMap((disref, instance) =>
      Array.from({ length: config.concurrency }, async (_, caller) => {
        while (performance.now() < ends) {
          const kind = caller === 0 ? 'extended' : pick();
          const t0 = process.hrtime.bigint();
          try {
            await operation(disref, instance, kind);
            // The long hold of `extended` is by design, not latency.
            if (kind !== 'extended') histogram.record(Number(process.hrtime.bigint() - t0) || 1);
            operations[kind] = (operations[kind] ?? 0) + 1;
            done += 1;
          } catch (error) {
            if (error instanceof LockTimeoutError) timeouts[kind] = (timeouts[kind] ?? 0) + 1;
            else recordError(error);
          }
        }
      }),
    ),
  );
  clearInterval(sampler);
  loadSeconds = (performance.now() - startedAt) / 1000;
  send(sample()); // the last sample under load
  await sleep(SETTLE_MS);
  collect();
  handlesEnd = resources();
  await Promise.all(disrefs.map((disref) => disref.close()));
});
const closedResources = resources();

const result: WorkerResult = {
  type: 'result',
  seconds: loadSeconds,
  operations,
  timeouts,
  errors,
  errorCount,
  backgroundErrors,
  warnings,
  exclusionViolations,
  references: tally,
  ...percentiles(),
  handlesStart,
  handlesEnd,
  aliveAfterClose: alive,
  resourcesAfterClose: closedResources,
};
send(result);
