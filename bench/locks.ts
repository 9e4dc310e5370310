/**
 * Lock benchmarks: disref side by side with its peers, in one run.
 *
 *   npm run bench                                # full run
 *   npm run bench -- --quick                     # fewer iterations
 *   npm run bench -- --svg docs/benchmarks.svg   # also draw the chart
 *
 * In process (embedded store vs async-mutex): uncontended acquire+release
 * latency, and hand-off throughput with many tasks on one key.
 * On a real redis-server started for the run (disref vs redlock vs
 * redis-semaphore): uncontended latency from one process, then several OS
 * processes contending for one hot key, then spread over 1000 keys.
 * Numbers are this machine's; the ratio column is what to compare.
 */
import { Mutex as AsyncMutex } from 'async-mutex';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { createHistogram, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { connect } from '../src/index.js';
import { RedisServer, redisUnavailable } from '../test/harness/servers.js';
import { markNamespaceFresh } from '../test/harness/targets.js';
import { barChart } from '../src/cli/chart.js';
import { label, LIBRARIES, makeLocker, type Library } from './peers.js';

const quick = process.argv.includes('--quick');
const ITERATIONS = quick ? 2_000 : 20_000;
const CONTENDERS = 8;

interface Row {
  readonly scenario: string;
  readonly library: string;
  readonly opsPerSecond: number;
  readonly p50: number | undefined;
  readonly p99: number | undefined;
}

/** Runs `once` sequentially `n` times; ops/s and latency percentiles in µs. */
async function sequential(
  n: number,
  once: () => Promise<void>,
): Promise<Omit<Row, 'scenario' | 'library'>> {
  for (let i = 0; i < Math.min(200, n); i++) await once(); // warm up
  const histogram = createHistogram();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    histogram.record(Number(process.hrtime.bigint() - t0) || 1);
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    opsPerSecond: n / seconds,
    p50: histogram.percentile(50) / 1000,
    p99: histogram.percentile(99) / 1000,
  };
}

/** `contenders` tasks share `n` acquisitions of one lock; total throughput. */
async function contended(
  n: number,
  contenders: number,
  once: () => Promise<void>,
): Promise<Omit<Row, 'scenario' | 'library'>> {
  let remaining = n;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: contenders }, async () => {
      while (remaining > 0) {
        remaining -= 1;
        await once();
      }
    }),
  );
  return {
    opsPerSecond: n / ((performance.now() - started) / 1000),
    p50: undefined,
    p99: undefined,
  };
}

async function inProcess(): Promise<Row[]> {
  const disref = await connect({ url: 'memory://bench', namespace: 'bench' });
  const mutex = disref.lock('bench', { ttl: 30_000 });
  const asyncMutex = new AsyncMutex();
  const disrefOnce = async (): Promise<void> => {
    const lease = await mutex.acquire();
    await lease.release();
  };
  const asyncMutexOnce = async (): Promise<void> => {
    const release = await asyncMutex.acquire();
    release();
  };
  const rows: Row[] = [];
  rows.push({
    scenario: 'uncontended acquire+release',
    library: 'disref (memory)',
    ...(await sequential(ITERATIONS, disrefOnce)),
  });
  rows.push({
    scenario: 'uncontended acquire+release',
    library: 'async-mutex',
    ...(await sequential(ITERATIONS, asyncMutexOnce)),
  });
  rows.push({
    scenario: `${String(CONTENDERS)} tasks, one key`,
    library: 'disref (memory)',
    ...(await contended(ITERATIONS, CONTENDERS, disrefOnce)),
  });
  rows.push({
    scenario: `${String(CONTENDERS)} tasks, one key`,
    library: 'async-mutex',
    ...(await contended(ITERATIONS, CONTENDERS, asyncMutexOnce)),
  });
  await disref.close();
  return rows;
}

/** Rows as table lines: scenario, library, ops/s, p50, p99, and disref's ratio to each peer. */
function tableLines(rows: readonly Row[]): string[][] {
  const format = (value: number | undefined, digits = 1): string =>
    value === undefined ? '-' : value.toFixed(digits);
  const lines = [['scenario', 'library', 'ops/s', 'p50 µs', 'p99 µs', 'disref ÷ peer']];
  for (const row of rows) {
    const ours = rows.find(
      (other) => other.scenario === row.scenario && other.library.startsWith('disref'),
    );
    const ratio =
      ours === undefined || row.library.startsWith('disref')
        ? ''
        : `${(ours.opsPerSecond / row.opsPerSecond).toFixed(2)}×`;
    lines.push([
      row.scenario,
      row.library,
      format(row.opsPerSecond, 0),
      format(row.p50),
      format(row.p99),
      ratio,
    ]);
  }
  return lines;
}

function markdownReport(sections: readonly { title: string; rows: readonly Row[] }[]): string {
  const parts = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench:docs` (bench/locks.ts); numbers are from the machine that ran it',
    `(${os.cpus().length.toString()} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version},`,
    `${new Date().toISOString().slice(0, 10)}). Compare the ratios, not the absolute figures.`,
    '',
    '- In process: the embedded store vs async-mutex (no leases, no fences, one process only).',
    '- Redis: a `redis-server` on loopback started for the run. Uncontended: one process, one lock at a',
    '  time. Contended: 4 OS processes taking one hot key in turn, then spread over 1000 keys. Every',
    '  library uses a 10 s lease and waits without a limit; redlock and redis-semaphore poll every',
    '  50 ms, disref waits for a release notification. `fair: false` shows disref letting callers',
    '  barge as the peers do; the default (fair) grants in arrival order, which costs throughput on',
    '  one hot key but bounds the wait (compare p99).',
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
    parts.push('');
  }
  return parts.join('\n');
}

function printTable(title: string, rows: readonly Row[]): void {
  const lines = tableLines(rows);
  const widths =
    lines[0]?.map((_, column) => Math.max(...lines.map((line) => (line[column] ?? '').length))) ??
    [];
  console.log(`\n${title}\n`);
  for (const line of lines) {
    console.log(line.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  '));
  }
}

const WORKERS = 4;
const HOT_PER_WORKER = quick ? 50 : 250;
const SPREAD_PER_WORKER = quick ? 100 : 1000;
const REDIS_SEQUENTIAL = quick ? 300 : 3000;

/** Runs `workers` worker processes together; total ops/s and latency percentiles in µs. */
async function processes(
  library: Library,
  url: string,
  mode: 'hot' | 'spread',
  perWorker: number,
): Promise<Omit<Row, 'scenario' | 'library'>> {
  const children = Array.from({ length: WORKERS }, () =>
    spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/worker.ts', library, url, mode, String(perWorker)],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    ),
  );
  const lines = children.map((child) =>
    createInterface({ input: child.stdout })[Symbol.asyncIterator](),
  );
  await Promise.all(lines.map((line) => line.next())); // "ready"
  const started = performance.now();
  for (const child of children) child.stdin.write('go\n');
  const results = await Promise.all(
    lines.map(
      async (line) => JSON.parse(String((await line.next()).value)) as { latencies: number[] },
    ),
  );
  const elapsed = performance.now() - started;
  const histogram = createHistogram();
  for (const { latencies } of results)
    for (const ms of latencies) histogram.record(Math.max(1, Math.round(ms * 1000)));
  return {
    opsPerSecond: (WORKERS * perWorker) / (elapsed / 1000),
    p50: histogram.percentile(50),
    p99: histogram.percentile(99),
  };
}

async function onRedis(): Promise<Row[]> {
  const server = await RedisServer.start();
  const admin = new Redis(server.port, '127.0.0.1');
  try {
    await markNamespaceFresh(admin, 'bench'); // a new server has served no leases: no start-up quarantine
    const rows: Row[] = [];
    for (const library of LIBRARIES) {
      const locker = await makeLocker(library, server.url);
      let n = 0;
      const result = await sequential(REDIS_SEQUENTIAL, () =>
        locker.withLock(`solo-${String(n++ % 50)}`, () => Promise.resolve()),
      );
      await locker.close();
      rows.push({ scenario: 'uncontended, 1 process', library: label(library), ...result });
    }
    for (const [mode, perWorker, scenario] of [
      ['hot', HOT_PER_WORKER, `${String(WORKERS)} processes, one key`],
      ['spread', SPREAD_PER_WORKER, `${String(WORKERS)} processes, 1000 keys`],
    ] as const) {
      for (const library of LIBRARIES) {
        await admin.flushall();
        await markNamespaceFresh(admin, 'bench');
        rows.push({
          scenario,
          library: label(library),
          ...(await processes(library, server.url, mode, perWorker)),
        });
      }
    }
    return rows;
  } finally {
    admin.disconnect();
    await server.dispose();
  }
}

const sections: { title: string; rows: Row[] }[] = [
  { title: `In process (${String(ITERATIONS)} acquisitions each)`, rows: await inProcess() },
];
printTable(sections[0]?.title ?? '', sections[0]?.rows ?? []);
const unavailable = redisUnavailable();
if (unavailable === undefined) {
  const rows = await onRedis();
  const title = `Redis ${'(redis-server on loopback; peers poll every 50 ms)'}`;
  sections.push({ title, rows });
  printTable(title, rows);
} else {
  console.log(`\nRedis section skipped: ${unavailable}`);
}
const markdownAt = process.argv.indexOf('--markdown');
const markdownFile = markdownAt >= 0 ? process.argv[markdownAt + 1] : undefined;
if (markdownFile !== undefined) {
  writeFileSync(markdownFile, markdownReport(sections));
  console.log(`\nreport written to ${markdownFile}`);
}
const svgAt = process.argv.indexOf('--svg');
const svgFile = svgAt >= 0 ? process.argv[svgAt + 1] : undefined;
if (svgFile !== undefined) {
  writeFileSync(
    svgFile,
    barChart('disref and peers: acquire+release throughput (ops/s, higher is better)', sections),
  );
  console.log(`\nchart written to ${svgFile}`);
}
