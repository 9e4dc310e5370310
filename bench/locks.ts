/**
 * Lock benchmarks: disref side by side with its peers, in one run.
 *
 *   npm run bench                 # full run
 *   npm run bench -- --quick      # shorter runs, peers at one retry interval
 *   npm run bench:docs            # full run, writes docs/benchmarks.md and its chart
 *
 * In process: the embedded store vs async-mutex.
 * Redis (a redis-server started for the run): disref vs redlock vs
 * redis-semaphore vs a hand-rolled floor (SET NX PX + EVALSHA
 * compare-and-delete), in the shapes the Redis issue sets targets for.
 * memcached (a memcached started for the run): disref alone (no peer fits).
 * References: reference + dereference pairs per second per backend.
 * Numbers are this machine's; compare the ratios, not the absolute figures.
 * disref is imported from dist/ (the scripts build first), so it runs as
 * the compiled JavaScript users install, like its peers.
 */
import { Mutex as AsyncMutex } from 'async-mutex';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { createHistogram, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { barChart } from '../src/cli/chart.js';
import { connect } from '../dist/index.js';
import { MemcachedServer } from '../test/harness/memcached-server.js';
import { markMemcachedNamespaceFresh } from '../test/harness/memcached-target.js';
import { RedisServer, findBinary, redisUnavailable } from '../test/harness/servers.js';
import { markNamespaceFresh } from '../test/harness/targets.js';
import { label, makeLocker, type Library, type Locker } from './peers.js';
import { inTurns } from './turns.js';

const quick = process.argv.includes('--quick');
// Short runs, many rounds: this machine's speed drifts over tens of seconds, and
// finely interleaved runs let every contender meet each phase alike.
const DURATION = quick ? 1_000 : 1_500;
const SEQUENTIAL = quick ? 500 : 2_000;
const PEER_RETRIES = quick ? [10] : [2, 10, 50];
/** Runs of each configuration per scenario; each is represented by its median run. */
const ROUNDS = quick ? 1 : 5;
/** Peers' retry interval where it never comes into play (uncontended). */
const UNCONTENDED_RETRY = 10;
const PEERS: readonly Library[] = ['redlock', 'redis-semaphore'];
/**
 * Run on one contended key besides the peers: disref fair and unfair, and the
 * fair hand-off floor (bench/peers.ts), the ceiling of any lock whose store
 * hands the lock to the next waiter and notifies it.
 */
const CONTENDED_OURS: readonly Library[] = ['disref', 'disref-unfair', 'hand-off-floor'];

interface Row {
  readonly scenario: string;
  readonly library: string;
  readonly opsPerSecond: number;
  /** Wait (or pair latency, uncontended) percentiles in ms. */
  readonly p50: number | undefined;
  readonly p99: number | undefined;
  /** Most ÷ fewest completions among workers (1 = perfectly even; Infinity = someone starved). */
  readonly spread: number | undefined;
}

interface Section {
  readonly title: string;
  readonly rows: Row[];
  /** Target checks, as sentences with the measured figures. */
  readonly checks: string[];
}

function percentiles(values: readonly number[]): { p50: number; p99: number } {
  const histogram = createHistogram();
  for (const ms of values) histogram.record(Math.max(1, Math.round(ms * 1000)));
  return { p50: histogram.percentile(50) / 1000, p99: histogram.percentile(99) / 1000 };
}

function spreadOf(counts: readonly number[]): number {
  const min = Math.min(...counts);
  return min === 0 ? Infinity : Math.max(...counts) / min;
}

/** What one stretch of an uncontended run did: completions per caller, time, pair latencies. */
interface Block {
  readonly counts: readonly number[];
  readonly elapsedMs: number;
  readonly latencies: readonly number[];
}

/** `pairs` acquire+release pairs in sequence by one caller, over 64 keys. */
async function sequentialPairs(locker: Locker, pairs: number): Promise<Block> {
  const latencies: number[] = [];
  const started = performance.now();
  for (let i = 0; i < pairs; i++) {
    const t0 = performance.now();
    await locker.withLock(`solo-${String(i % 64)}`, () => Promise.resolve());
    latencies.push(performance.now() - t0);
  }
  return { counts: [pairs], elapsedMs: performance.now() - started, latencies };
}

/** `callers` concurrent loops on distinct keys over one connection, for `ms`. */
async function concurrentLoops(locker: Locker, callers: number, ms: number): Promise<Block> {
  const until = performance.now() + ms;
  const latencies: number[] = [];
  const started = performance.now();
  const counts = await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      let count = 0;
      while (performance.now() < until) {
        const t0 = performance.now();
        await locker.withLock(`distinct-${String(caller)}`, () => Promise.resolve());
        latencies.push(performance.now() - t0);
        count += 1;
      }
      return count;
    }),
  );
  return { counts, elapsedMs: performance.now() - started, latencies };
}

/** A row's figures from what a contender did (one block, or the sum of its blocks). */
function figures(block: Block): Omit<Row, 'scenario' | 'library'> {
  const completions = block.counts.reduce((a, b) => a + b, 0);
  return {
    opsPerSecond: completions / (block.elapsedMs / 1000),
    ...percentiles(block.latencies),
    spread: block.counts.length > 1 ? spreadOf(block.counts) : undefined,
  };
}

/** One caller, `n` acquire+release pairs in sequence (after 200 to warm up). */
async function oneCaller(locker: Locker, n: number): Promise<Omit<Row, 'scenario' | 'library'>> {
  await sequentialPairs(locker, Math.min(200, n));
  return figures(await sequentialPairs(locker, n));
}

/** `callers` concurrent loops on distinct keys over one connection, for DURATION. */
async function distinctKeys(
  locker: Locker,
  callers: number,
): Promise<Omit<Row, 'scenario' | 'library'>> {
  return figures(await concurrentLoops(locker, callers, DURATION));
}

/** `workers` connections in this process take one key in turn for DURATION, holding it `holdMs`. */
async function oneKey(
  lockers: readonly Locker[],
  holdMs: number,
): Promise<Omit<Row, 'scenario' | 'library'>> {
  const until = performance.now() + DURATION;
  const waits: number[] = [];
  const started = performance.now();
  const work = holdMs > 0 ? () => sleep(holdMs) : () => Promise.resolve();
  const counts = await Promise.all(
    lockers.map(async (locker) => {
      let count = 0;
      while (performance.now() < until) {
        waits.push(await locker.withLock('hot', work));
        count += 1;
      }
      return count;
    }),
  );
  const total = counts.reduce((a, b) => a + b, 0);
  return {
    opsPerSecond: total / ((performance.now() - started) / 1000),
    ...percentiles(waits),
    spread: spreadOf(counts),
  };
}

/** Worker processes of one configuration (bench/worker.ts): `count` processes, `perProcess` connections each. */
interface WorkerConfig {
  readonly library: Library;
  readonly url: string;
  readonly mode: 'hot' | 'spread';
  readonly count: number;
  readonly perProcess: number;
  readonly retry: number;
}

/**
 * The worker processes of each configuration, started (and warmed up, see
 * bench/worker.ts) on its first run and kept for its later runs, so every run
 * measures warm processes; {@link stop} ends them all.
 */
class WorkerPools {
  private readonly pools = new Map<string, Promise<WorkerPool>>();

  /** One run of DURATION on the configuration's processes. */
  async run(config: WorkerConfig): Promise<Omit<Row, 'scenario' | 'library'>> {
    const name = JSON.stringify(config);
    let pool = this.pools.get(name);
    if (pool === undefined) {
      pool = WorkerPool.start(config);
      this.pools.set(name, pool);
    }
    return (await pool).run();
  }

  async stop(): Promise<void> {
    const pools = await Promise.allSettled(this.pools.values());
    this.pools.clear();
    await Promise.all(
      pools.flatMap((pool) => (pool.status === 'fulfilled' ? [pool.value.stop()] : [])),
    );
  }
}

class WorkerPool {
  private constructor(
    private readonly children: readonly ChildProcessByStdio<Writable, Readable, null>[],
    private readonly lines: readonly AsyncIterator<string>[],
  ) {}

  static async start(config: WorkerConfig): Promise<WorkerPool> {
    const { library, url, mode, count, perProcess, retry } = config;
    const children = Array.from({ length: count }, () =>
      spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          'bench/worker.ts',
          library,
          url,
          mode,
          String(perProcess),
          String(DURATION),
          String(retry),
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      ),
    );
    const lines = children.map((child) =>
      createInterface({ input: child.stdout })[Symbol.asyncIterator](),
    );
    await Promise.all(lines.map((line) => line.next())); // "ready"
    return new WorkerPool(children, lines);
  }

  async run(): Promise<Omit<Row, 'scenario' | 'library'>> {
    const started = performance.now();
    for (const child of this.children) child.stdin.write('go\n');
    const results = await Promise.all(
      this.lines.map(async (line) => {
        const next = await line.next();
        if (next.done === true) throw new Error('a benchmark worker ended before its result');
        return JSON.parse(next.value) as { counts: number[]; waits: number[] };
      }),
    );
    const elapsed = performance.now() - started;
    const counts = results.flatMap((result) => result.counts);
    const total = counts.reduce((a, b) => a + b, 0);
    return {
      opsPerSecond: total / (elapsed / 1000),
      ...percentiles(results.flatMap((result) => result.waits)),
      spread: spreadOf(counts),
    };
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) {
              resolve();
              return;
            }
            child.once('exit', () => {
              resolve();
            });
            child.stdin.end('exit\n');
          }),
      ),
    );
  }
}

/** Runs `measure` with worker pools, and stops every worker process after it. */
async function withWorkers<T>(measure: (pools: WorkerPools) => Promise<T>): Promise<T> {
  const pools = new WorkerPools();
  try {
    return await measure(pools);
  } finally {
    await pools.stop();
  }
}

async function lockers(
  library: Library,
  url: string,
  count: number,
  retry: number,
): Promise<Locker[]> {
  return Promise.all(Array.from({ length: count }, () => makeLocker(library, url, retry)));
}

async function closeAll(all: readonly Locker[]): Promise<void> {
  await Promise.all(all.map((locker) => locker.close()));
}

/** Uncontended blocks: BLOCKS per contender, each BLOCK_PAIRS pairs (one caller) or BLOCK_MS long. */
const BLOCKS = quick ? 8 : 40;
const BLOCK_PAIRS = 100;
const BLOCK_MS = 300;

/**
 * An uncontended scenario measured in short blocks that take turns: every
 * contender opens its locker once and warms it up, then the contenders run
 * one block each, in an order that rotates every turn, BLOCKS turns. This
 * machine's speed drifts over seconds, by up to 2× (CPU steal, wake-up
 * latency), which runs of a second or more per contender read as differences
 * between them; a block lasts a few tenths of a second at most, so every
 * contender meets every phase alike. A row sums a contender's blocks: its
 * completions over its time, its percentiles over all its pairs.
 */
async function pairedBlocks(
  scenario: string,
  ours: readonly Library[],
  url: string,
  block: (locker: Locker, warmUp: boolean) => Promise<Block>,
): Promise<Row[]> {
  const contenders = [
    ...ours.map((library) => ({ library, retry: 50, label: label(library) })),
    ...PEERS.map((library) => ({
      library,
      retry: UNCONTENDED_RETRY,
      label: label(library, UNCONTENDED_RETRY),
    })),
  ];
  const opened = await Promise.all(
    contenders.map((contender) => makeLocker(contender.library, url, contender.retry)),
  );
  try {
    for (const locker of opened) await block(locker, true);
    const sums = opened.map(() => ({
      counts: [] as number[],
      elapsedMs: 0,
      latencies: [] as number[],
    }));
    await inTurns(opened.length, BLOCKS, async (index) => {
      const locker = opened[index];
      const sum = sums[index];
      if (locker === undefined || sum === undefined) return;
      const result = await block(locker, false);
      sum.elapsedMs += result.elapsedMs;
      result.counts.forEach((count, caller) => {
        sum.counts[caller] = (sum.counts[caller] ?? 0) + count;
      });
      sum.latencies.push(...result.latencies);
    });
    return contenders.map((contender, i) => ({
      scenario,
      library: contender.label,
      ...figures(sums[i] ?? { counts: [], elapsedMs: 0, latencies: [] }),
    }));
  } finally {
    await closeAll(opened);
  }
}

/** One configuration of a scenario: how it shows in the table, and one run of it. */
interface Contender {
  readonly label: string;
  readonly measure: () => Promise<Omit<Row, 'scenario' | 'library'>>;
}

/**
 * Runs every contender ROUNDS times, in an order that rotates each round (so
 * none always runs first or last while the machine warms up or gets busy),
 * and returns each one's median run (by ops/s), in the order given. Every
 * contender gets the same number of samples.
 */
async function interleaved(scenario: string, contenders: readonly Contender[]): Promise<Row[]> {
  const runs = contenders.map((): Row[] => []);
  await inTurns(contenders.length, ROUNDS, async (index) => {
    const contender = contenders[index];
    if (contender === undefined) return;
    runs[index]?.push({ scenario, library: contender.label, ...(await contender.measure()) });
  });
  return runs.map(medianRun);
}

/**
 * disref (each of `ours`) and each peer at each of `retries`, interleaved
 * (see {@link interleaved}); each peer is represented by its best retry
 * interval. Uncontended scenarios pass one interval: a peer that never finds
 * its key taken never waits.
 */
async function compare(
  scenario: string,
  ours: readonly Library[],
  measure: (library: Library, retry: number) => Promise<Omit<Row, 'scenario' | 'library'>>,
  retries: readonly number[] = PEER_RETRIES,
): Promise<Row[]> {
  const configs = [
    ...ours.map((library) => ({ library, retry: 50, label: label(library) })),
    ...PEERS.flatMap((library) =>
      retries.map((retry) => ({ library, retry, label: label(library, retry) })),
    ),
  ];
  const medians = await interleaved(
    scenario,
    configs.map((config) => ({
      label: config.label,
      measure: () => measure(config.library, config.retry),
    })),
  );
  const rows = medians.filter((_, i) => ours.includes(configs[i]?.library as Library));
  for (const peer of PEERS) {
    const best = medians
      .filter((_, i) => configs[i]?.library === peer)
      .sort((a, b) => b.opsPerSecond - a.opsPerSecond)[0];
    if (best !== undefined) rows.push(best);
  }
  return rows;
}

/** The run with the median ops/s (the lower middle one for an even count). */
function medianRun(runs: readonly Row[]): Row {
  const sorted = [...runs].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
  const middle = sorted[Math.floor((sorted.length - 1) / 2)];
  if (middle === undefined) throw new Error('no runs to take the median of');
  return middle;
}

function bestPeer(rows: readonly Row[], scenario: string): Row | undefined {
  return rows
    .filter(
      (row) =>
        row.scenario === scenario &&
        (row.library.startsWith('redlock') || row.library.startsWith('redis-semaphore')),
    )
    .sort((a, b) => b.opsPerSecond - a.opsPerSecond)[0];
}

/**
 * Where disref and a reference row (the best peer, or async-mutex) stand
 * against the fair hand-off floor of the same scenario: how much of the
 * floor disref reaches, and how much of it the reference is.
 */
function handOffCeiling(
  rows: readonly Row[],
  scenario: string,
  ours: Row,
  reference: Row | undefined,
): string {
  const floor = find(rows, scenario, label('hand-off-floor'));
  if (floor === undefined) return '';
  const against =
    reference === undefined
      ? ''
      : `, ${reference.library} at ${fmt(reference.opsPerSecond / floor.opsPerSecond)}×`;
  return `; against the fair hand-off floor: disref at ${fmt(ours.opsPerSecond / floor.opsPerSecond)}×${against}`;
}

function find(rows: readonly Row[], scenario: string, library: string): Row | undefined {
  return rows.find((row) => row.scenario === scenario && row.library === library);
}

const fmt = (value: number, digits = 2): string =>
  Number.isFinite(value) ? value.toFixed(digits) : '∞';

async function inProcess(): Promise<Section> {
  const disref = await connect({ url: 'memory://bench', namespace: 'bench' });
  const memoryLocker: Locker = {
    withLock: async (key, work) => {
      const t0 = performance.now();
      const lease = await disref.lock(key).acquire();
      const waited = performance.now() - t0;
      try {
        await work();
      } finally {
        await lease.release();
      }
      return waited;
    },
    close: () => Promise.resolve(),
  };
  const mutex = new AsyncMutex();
  const asyncMutexLocker: Locker = {
    withLock: async (_key, work) => {
      const t0 = performance.now();
      const release = await mutex.acquire();
      const waited = performance.now() - t0;
      try {
        await work();
      } finally {
        release();
      }
      return waited;
    },
    close: () => Promise.resolve(),
  };
  const rows = [
    ...(await interleaved('1 caller', [
      { label: 'disref (memory)', measure: () => oneCaller(memoryLocker, SEQUENTIAL * 4) },
      { label: 'async-mutex', measure: () => oneCaller(asyncMutexLocker, SEQUENTIAL * 4) },
    ])),
    ...(await interleaved('8 tasks, one key, 1 ms held', [
      {
        label: 'disref (memory)',
        measure: () => oneKey(Array(8).fill(memoryLocker) as Locker[], 1),
      },
      {
        label: 'async-mutex',
        measure: () => oneKey(Array(8).fill(asyncMutexLocker) as Locker[], 1),
      },
    ])),
  ];
  await disref.close();
  return { title: 'In process (embedded store vs async-mutex)', rows, checks: [] };
}

async function onRedis(asyncMutexOneMs: Row | undefined): Promise<Section> {
  const server = await RedisServer.start();
  const admin = new Redis(server.port, '127.0.0.1');
  const fresh = async (): Promise<void> => {
    await admin.flushall();
    await markNamespaceFresh(admin, 'bench'); // a new server has served no leases: no start-up quarantine
  };
  const url = server.url;
  const rows: Row[] = [];
  try {
    await fresh();
    rows.push(
      ...(await pairedBlocks(
        '1 caller',
        ['floor', 'disref', 'disref-unfair'],
        url,
        (locker, warmUp) => sequentialPairs(locker, warmUp ? 200 : BLOCK_PAIRS),
      )),
      ...(await pairedBlocks(
        '64 callers, distinct keys',
        ['floor', 'disref', 'disref-unfair'],
        url,
        (locker, warmUp) => concurrentLoops(locker, 64, warmUp ? 500 : BLOCK_MS),
      )),
    );
    for (const [workers, holdMs] of [
      [2, 0],
      [8, 1],
      [32, 0],
    ] as const) {
      const scenario = `${String(workers)} workers, one key${holdMs > 0 ? `, ${String(holdMs)} ms held` : ''}`;
      await fresh();
      rows.push(
        ...(await compare(scenario, CONTENDED_OURS, async (library, retry) => {
          const all = await lockers(library, url, workers, retry);
          try {
            return await oneKey(all, holdMs);
          } finally {
            await closeAll(all);
          }
        })),
      );
    }
    await fresh();
    rows.push(
      ...(await withWorkers((pools) =>
        compare('8 workers over 4 processes, one key', CONTENDED_OURS, (library, retry) =>
          pools.run({ library, url, mode: 'hot', count: 4, perProcess: 2, retry }),
        ),
      )),
    );
    await fresh();
    rows.push(
      ...(await withWorkers((pools) =>
        compare('4 processes, 1000 keys', ['disref'], (library, retry) =>
          pools.run({ library, url, mode: 'spread', count: 4, perProcess: 1, retry }),
        ),
      )),
    );
  } finally {
    admin.disconnect();
    await server.dispose();
  }
  const checks: string[] = [];
  const floor = find(rows, '1 caller', label('floor'));
  const one = find(rows, '1 caller', label('disref'));
  if (floor !== undefined && one !== undefined) {
    // The peers send the floor's two commands or as much again: how near they come shows
    // what the floor leaves to a lock that does more than SET and delete.
    const peers = rows
      .filter(
        (row) => row.scenario === '1 caller' && PEERS.some((peer) => row.library.startsWith(peer)),
      )
      .map((row) => `${row.library} ${fmt(row.opsPerSecond / floor.opsPerSecond)}×`)
      .join(', ');
    checks.push(
      `1 caller: disref at ${fmt(one.opsPerSecond / floor.opsPerSecond)}× the floor (target ≥ 0.95; ${peers}; ` +
        'npm run bench:one-caller takes the pair apart)',
    );
  }
  for (const scenario of [
    '64 callers, distinct keys',
    '32 workers, one key',
    '8 workers over 4 processes, one key',
  ]) {
    const ours = find(rows, scenario, label('disref'));
    const peer = bestPeer(rows, scenario);
    if (ours !== undefined && peer !== undefined) {
      checks.push(
        `${scenario}: disref at ${fmt(ours.opsPerSecond / peer.opsPerSecond)}× the best peer (${peer.library}); ` +
          `spread most/fewest per worker ${fmt(ours.spread ?? NaN)} vs ${fmt(peer.spread ?? NaN)}` +
          handOffCeiling(rows, scenario, ours, peer),
      );
    }
  }
  const eight = find(rows, '8 workers, one key, 1 ms held', label('disref'));
  const eightPeer = bestPeer(rows, '8 workers, one key, 1 ms held');
  if (eight !== undefined && eightPeer !== undefined) {
    checks.push(
      `8 workers, 1 ms held: disref at ${asyncMutexOneMs === undefined ? '?' : fmt(eight.opsPerSecond / asyncMutexOneMs.opsPerSecond)}× async-mutex (target ≥ 0.9); ` +
        `p99 wait ${fmt(eight.p99 ?? NaN, 1)} ms vs best peer ${fmt(eightPeer.p99 ?? NaN, 1)} ms (${fmt((eightPeer.p99 ?? NaN) / (eight.p99 ?? NaN), 1)}× lower, target ≥ 10); ` +
        `spread ${fmt(eight.spread ?? NaN)} (target ≤ 1.2)` +
        handOffCeiling(rows, '8 workers, one key, 1 ms held', eight, asyncMutexOneMs),
    );
  }
  return { title: 'Redis (one redis-server on loopback)', rows, checks };
}

async function onMemcached(): Promise<Section> {
  const server = await MemcachedServer.start();
  const url = `memcached://127.0.0.1:${String(server.port)}`;
  const rows: Row[] = [];
  try {
    await markMemcachedNamespaceFresh(url, 'bench');
    const locker = await makeLocker('disref-memcached', url, 5);
    rows.push({
      scenario: '1 caller',
      library: label('disref-memcached'),
      ...(await oneCaller(locker, SEQUENTIAL)),
    });
    rows.push({
      scenario: '64 callers, distinct keys',
      library: label('disref-memcached'),
      ...(await distinctKeys(locker, 64)),
    });
    await locker.close();
    const all = await lockers('disref-memcached', url, 8, 5);
    rows.push({
      scenario: '8 workers, one key, 1 ms held',
      library: label('disref-memcached'),
      ...(await oneKey(all, 1)),
    });
    await closeAll(all);
    rows.push({
      scenario: '8 workers over 4 processes, one key',
      library: label('disref-memcached'),
      ...(await withWorkers((pools) =>
        pools.run({
          library: 'disref-memcached',
          url,
          mode: 'hot',
          count: 4,
          perProcess: 2,
          retry: 5,
        }),
      )),
    });
  } finally {
    await server.stop();
  }
  return { title: 'memcached (one server on loopback; waiters poll every 5 ms)', rows, checks: [] };
}

async function references(
  redisUrl: string | undefined,
  memcachedUrl: string | undefined,
): Promise<Section> {
  const rows: Row[] = [];
  const targets: [string, string | undefined][] = [
    ['memory', 'memory://bench-references'],
    ['redis', redisUrl],
    ['memcached', memcachedUrl],
  ];
  for (const [name, url] of targets) {
    if (url === undefined) continue;
    const disref = await connect({ url, namespace: 'bench' });
    try {
      const pair = async (resource: string): Promise<void> => {
        const ref = await disref.reference(resource);
        await ref.dereference(() => undefined);
      };
      let i = 0;
      const sequential = await oneCaller(
        {
          withLock: async () => {
            await pair(`bench:${String(i++)}`);
            return 0;
          },
          close: () => Promise.resolve(),
        },
        Math.round(SEQUENTIAL / 3),
      );
      rows.push({ scenario: '1 caller', library: `disref (${name})`, ...sequential });
      const concurrent = await distinctKeys(
        {
          withLock: async (key) => {
            await pair(`bench:${key}:${String(i++)}`);
            return 0;
          },
          close: () => Promise.resolve(),
        },
        16,
      );
      rows.push({
        scenario: '16 callers, distinct resources',
        library: `disref (${name})`,
        ...concurrent,
      });
    } finally {
      await disref.close();
    }
  }
  return { title: 'References: reference + dereference pairs (with completion)', rows, checks: [] };
}

function tableLines(rows: readonly Row[]): string[][] {
  const cell = (value: number | undefined, digits: number): string =>
    value === undefined ? '-' : fmt(value, digits);
  const lines = [['scenario', 'library', 'ops/s', 'p50 ms', 'p99 ms', 'most/fewest']];
  for (const row of rows) {
    lines.push([
      row.scenario,
      row.library,
      cell(row.opsPerSecond, 0),
      cell(row.p50, 2),
      cell(row.p99, 2),
      cell(row.spread, 2),
    ]);
  }
  return lines;
}

function printSection(section: Section): void {
  const lines = tableLines(section.rows);
  const widths =
    lines[0]?.map((_, column) => Math.max(...lines.map((line) => (line[column] ?? '').length))) ??
    [];
  console.log(`\n${section.title}\n`);
  for (const line of lines)
    console.log(line.map((text, column) => text.padEnd(widths[column] ?? 0)).join('  '));
  for (const check of section.checks) console.log(`  - ${check}`);
}

function markdownReport(sections: readonly Section[]): string {
  const cpus = os.cpus();
  const parts = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench:docs` (bench/locks.ts) on the machine that ran it:',
    `${String(cpus.length)} × ${cpus[0]?.model ?? 'unknown CPU'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
    'Every process (servers, workers, the benchmark) shares those cores, and other work running on the',
    'machine at the same time may have shared them too, so absolute figures are low and vary between runs;',
    'compare the ratios. "p50/p99" are waits for the lock (uncontended rows: the whole pair);',
    '"most/fewest" is the most completions of one worker divided by the fewest (∞: a worker starved).',
    'The uncontended Redis rows (1 caller, 64 callers) keep every contender connected and let them take',
    `turns in short blocks (${String(BLOCK_PAIRS)} pairs, or ${String(BLOCK_MS)} ms), ${String(BLOCKS)} turns in an order that rotates every turn;`,
    "a row is the sum of a contender's blocks. This machine's speed drifts by up to 2× over seconds, and",
    'blocks of a few tenths of a second meet every phase alike, where runs of seconds read the drift as differences.',
    `Every other scenario runs every contender ${String(ROUNDS)} times, interleaved in an order that rotates each round,`,
    "and each row is that contender's median run (by ops/s), so a busy moment of the machine hits all alike.",
    'Peers poll: where they can meet contention each runs at several retry intervals and its best median is',
    'kept, named with the interval (uncontended, the interval never comes into play: one is run).',
    'disref on Redis waits for the release (the store hands the lock to the next in line), and sends the lock',
    'operations that fall due together on one connection as one script call. disref runs from its build',
    '(dist/), as an installed package does: the peers run as compiled JavaScript too.',
    '"floor: fair hand-off" is the least a fair lock can do whose store hands the lock to the next waiter:',
    'a script takes the lock or queues, the release script pops the next waiter and PUBLISHes the grant to',
    'its connection; no fence, lease renewal, crash recovery or quarantine. Every hand-off pays that script',
    "and that message on the critical path, so on one contended key it is the ceiling of disref's design.",
    'The worker processes of the multi-process rows are started once per contender, warmed up for 2 s',
    'on the keys they will take, all processes together on the one hot key (V8 compiles lock code for',
    'seconds, hand-offs between processes included), and kept for all its runs.',
    '',
    '![disref and peers](benchmarks.svg)',
    '',
  ];
  for (const section of sections) {
    const [header, ...body] = tableLines(section.rows);
    parts.push(
      `## ${section.title}`,
      '',
      `| ${(header ?? []).join(' | ')} |`,
      `|${(header ?? []).map(() => ' --- ').join('|')}|`,
    );
    for (const line of body) parts.push(`| ${line.join(' | ')} |`);
    if (section.checks.length > 0) parts.push('', ...section.checks.map((check) => `- ${check}`));
    parts.push('');
  }
  return parts.join('\n');
}

const sections: Section[] = [];
const local = await inProcess();
sections.push(local);
printSection(local);
let redisUrl: string | undefined;
let memcachedUrl: string | undefined;
const unavailable = redisUnavailable();
if (unavailable === undefined) {
  const redis = await onRedis(find(local.rows, '8 tasks, one key, 1 ms held', 'async-mutex'));
  sections.push(redis);
  printSection(redis);
} else {
  console.log(`\nRedis section skipped: ${unavailable}`);
}
if (findBinary('memcached') !== undefined) {
  const memcached = await onMemcached();
  sections.push(memcached);
  printSection(memcached);
} else {
  console.log('\nmemcached section skipped: memcached not found');
}
{
  // References need live servers of their own.
  const redisServer = unavailable === undefined ? await RedisServer.start() : undefined;
  const memcachedServer =
    findBinary('memcached') === undefined ? undefined : await MemcachedServer.start();
  try {
    if (redisServer !== undefined) {
      redisUrl = redisServer.url;
      const admin = new Redis(redisServer.port, '127.0.0.1');
      await markNamespaceFresh(admin, 'bench');
      admin.disconnect();
    }
    if (memcachedServer !== undefined) {
      memcachedUrl = `memcached://127.0.0.1:${String(memcachedServer.port)}`;
      await markMemcachedNamespaceFresh(memcachedUrl, 'bench');
    }
    const refs = await references(redisUrl, memcachedUrl);
    sections.push(refs);
    printSection(refs);
  } finally {
    await redisServer?.dispose();
    await memcachedServer?.stop();
  }
}

const argument = (name: string): string | undefined => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const markdownFile = argument('--markdown');
if (markdownFile !== undefined) {
  writeFileSync(markdownFile, markdownReport(sections));
  console.log(`\nreport written to ${markdownFile}`);
}
const svgFile = argument('--svg');
if (svgFile !== undefined) {
  writeFileSync(
    svgFile,
    barChart('disref and peers: throughput (ops/s, higher is better)', sections),
  );
  console.log(`chart written to ${svgFile}`);
}
