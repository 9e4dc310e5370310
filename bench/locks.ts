/**
 * Lock benchmarks: disref side by side with its peers, in one run.
 *
 *   npm run bench            # full run
 *   npm run bench -- --quick # fewer iterations
 *
 * In-process (embedded store vs async-mutex): uncontended acquire+release
 * latency, and hand-off throughput with many concurrent tasks on one key.
 * Numbers are this machine's; the ratio column is what to compare.
 */
import { Mutex as AsyncMutex } from 'async-mutex';
import { createHistogram, performance } from 'node:perf_hooks';
import { connect } from '../src/index.js';

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

function printTable(title: string, rows: readonly Row[]): void {
  const format = (value: number | undefined, digits = 1): string =>
    value === undefined ? '-' : value.toFixed(digits);
  const lines = [['scenario', 'library', 'ops/s', 'p50 µs', 'p99 µs', 'disref ÷ peer']];
  for (const row of rows) {
    const ours = rows.find(
      (other) => other.scenario === row.scenario && other.library.startsWith('disref'),
    );
    const ratio =
      ours === undefined || row === ours
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
  const widths =
    lines[0]?.map((_, column) => Math.max(...lines.map((line) => (line[column] ?? '').length))) ??
    [];
  console.log(`\n${title}\n`);
  for (const line of lines) {
    console.log(line.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  '));
  }
}

printTable(`In process (${String(ITERATIONS)} acquisitions each)`, await inProcess());
