/**
 * `disref bench`: measures the configured store from this machine — round
 * trip, uncontended acquire+release latency and throughput, and contended
 * hand-off between several connections.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createHistogram, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { connect, type Disref } from '../disref.js';
import { InvalidArgumentError } from '../errors.js';
import { barChart } from './chart.js';
import { EXIT } from './exit-codes.js';

export const BENCH_HELP = `Usage: disref bench [--url URL] [--quick] [--workers N] [--svg FILE]

Measures the store from this machine and prints a table:
  round trip          one store operation (inspect of a free key)
  uncontended         acquire + release on keys nobody else uses
  contended           N connections taking turns on one key

Options:
  --url URL      store URL (default: $DISREF_URL, else the embedded store)
  --quick        fewer iterations (well under a minute)
  --workers N    connections contending in the last scenario (default 4)
  --svg FILE     also write a bar chart of the throughputs
  -h, --help     print this help
`;

interface Measurement {
  readonly scenario: string;
  readonly operations: number;
  readonly opsPerSecond: number;
  /** Percentiles in ms. */
  readonly p50: number;
  readonly p99: number;
}

/** Runs `once` `n` times in sequence; throughput and latency percentiles. */
async function sequential(
  scenario: string,
  n: number,
  once: () => Promise<unknown>,
): Promise<Measurement> {
  const histogram = createHistogram();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    histogram.record(Math.max(1, Number(process.hrtime.bigint() - t0)));
  }
  return summarize(scenario, n, performance.now() - started, histogram);
}

function summarize(
  scenario: string,
  operations: number,
  elapsedMs: number,
  histogram: ReturnType<typeof createHistogram>,
): Measurement {
  return {
    scenario,
    operations,
    opsPerSecond: operations / (elapsedMs / 1000),
    p50: histogram.percentile(50) / 1e6,
    p99: histogram.percentile(99) / 1e6,
  };
}

export async function benchCommand(args: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...args],
    options: {
      url: { type: 'string' },
      quick: { type: 'boolean' },
      workers: { type: 'string' },
      svg: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(BENCH_HELP);
    return EXIT.ok;
  }
  const workers = values.workers === undefined ? 4 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 2 || workers > 64) {
    throw new InvalidArgumentError('--workers', 'a whole number in [2, 64]', values.workers);
  }
  const quick = values.quick === true;
  const n = quick ? 200 : 2000;
  const url = values.url ?? process.env.DISREF_URL;
  // One namespace for every bench run; keys carry this run's identity so runs do not collide.
  const namespace = 'disref-bench';
  const run = `${hostname()}-${String(process.pid)}`;
  const instances: Disref[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      instances.push(
        await connect({ ...(url === undefined || url === '' ? {} : { url }), namespace }),
      );
    }
    const [first] = instances;
    if (first === undefined) throw new Error('unreachable: no instance');
    process.stdout.write(`disref bench: ${first.backend.address} from ${hostname()}\n\n`);
    const results: Measurement[] = [];
    results.push(await sequential('round trip', n, () => first.backend.inspect(`${run}:free`)));
    let key = 0;
    results.push(
      await sequential('uncontended acquire+release', n, async () => {
        const lease = await first.lock(`${run}:solo:${String(key++ % 64)}`).acquire();
        await lease.release();
      }),
    );
    results.push(await contended(instances, `${run}:hot`, quick ? 100 : 1000));
    printTable(results);
    if (values.svg !== undefined) {
      writeFileSync(
        values.svg,
        barChart(`disref bench: ${first.backend.address} (ops/s)`, [
          {
            title: first.backend.name,
            rows: results.map((result) => ({ ...result, library: result.scenario })),
          },
        ]),
      );
      process.stdout.write(`\nchart written to ${values.svg}\n`);
    }
    return EXIT.ok;
  } finally {
    await Promise.all(instances.map((instance) => instance.close()));
  }
}

/** Every connection takes the same key in turn until `total` acquisitions are done. */
async function contended(
  instances: readonly Disref[],
  key: string,
  total: number,
): Promise<Measurement> {
  const histogram = createHistogram();
  let remaining = total;
  const started = performance.now();
  await Promise.all(
    instances.map(async (instance) => {
      const lock = instance.lock(key);
      while (remaining > 0) {
        remaining -= 1;
        const t0 = process.hrtime.bigint();
        const lease = await lock.acquire();
        await lease.release();
        histogram.record(Math.max(1, Number(process.hrtime.bigint() - t0)));
      }
    }),
  );
  return summarize(
    `contended, ${String(instances.length)} connections on one key`,
    total,
    performance.now() - started,
    histogram,
  );
}

function printTable(results: readonly Measurement[]): void {
  const rows = [
    ['scenario', 'operations', 'ops/s', 'p50 ms', 'p99 ms'],
    ...results.map((result) => [
      result.scenario,
      String(result.operations),
      result.opsPerSecond.toFixed(0),
      result.p50.toFixed(3),
      result.p99.toFixed(3),
    ]),
  ];
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  for (const row of rows) {
    process.stdout.write(
      `${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ')}\n`,
    );
  }
}
