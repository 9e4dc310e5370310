/**
 * Load and soak: many keys, many concurrent callers in several worker
 * processes, for a bounded time, on memory, Redis and memcached (servers
 * started here through the test harness). Prints throughput, latency, heap
 * and handles over time, server connections and what is left in the store,
 * and a verdict on whether everything stayed flat (the rule is in
 * bench/soak-run.ts and docs/reliability.md).
 *
 *   npm run soak -- --backend redis --seconds 180
 *   npm run soak -- --backend all --seconds 60 --workers 4 --concurrency 32 --keys 1000
 *
 * Exits 1 when a run is not flat or had unexpected errors.
 */
import { parseArgs } from 'node:util';
import { mb, runSoak, soakUnavailable, type SoakBackend, type SoakReport } from './soak-run.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'all' },
    seconds: { type: 'string', default: '60' },
    workers: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '32' },
    keys: { type: 'string', default: '1000' },
    sample: { type: 'string', default: '5' },
    quiet: { type: 'boolean', default: false },
  },
});
const backends: SoakBackend[] =
  values.backend === 'all' ? ['memory', 'redis', 'memcached'] : [values.backend as SoakBackend];
for (const backend of backends) {
  if (!['memory', 'redis', 'memcached'].includes(backend)) {
    throw new Error(`--backend: memory, redis, memcached or all; got ${backend}`);
  }
}

function row(report: SoakReport): string[] {
  const { summary: s, options: o, server } = report;
  const leftKeys = server === null ? '-' : JSON.stringify(server.left).replace(/"/g, '');
  return [
    o.backend,
    `${String(report.workers.length)}x${String(o.backend === 'memory' ? o.workers * o.concurrency : o.concurrency)}`,
    String(Math.round(s.opsPerSecond)),
    s.p50.toFixed(2),
    s.p99.toFixed(1),
    s.max.toFixed(0),
    `${String(s.timeouts)}/${String(s.errors)}`,
    `${mb(s.heapStart)} / ${mb(s.heapMiddle)} / ${mb(s.heapEnd)}`,
    `${(s.heapGrowth * 100).toFixed(1)}%`,
    `${mb(s.rssStart)} / ${mb(s.rssEnd)}`,
    `${s.handlesStart} / ${s.handlesEnd}`,
    String(s.aliveAfterClose),
    server === null
      ? '-'
      : `${String(server.connectionsBefore)} / ${String(Math.max(...server.samples.map((x) => x.connections)))} / ${String(server.connectionsAfter)}`,
    leftKeys,
    s.flat ? 'flat' : 'NOT FLAT',
  ];
}

const header = [
  'backend',
  'procs x callers',
  'ops/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'timeouts/errors',
  'heap start / mid / end (after GC)',
  '2nd-half growth',
  'rss start / end',
  'sockets/timers start / end',
  'alive after close',
  'server conns before / peak / after',
  'left in store',
  'verdict',
];

const rows: string[][] = [];
let failed = false;
for (const backend of backends) {
  const unavailable = soakUnavailable(backend);
  if (unavailable !== undefined) {
    console.log(`*** SKIPPING ${backend}: ${unavailable} ***`);
    continue;
  }
  const seconds = Number(values.seconds);
  console.log(`${backend}: ${String(seconds)} s ...`);
  const report = await runSoak({
    backend,
    seconds,
    workers: Number(values.workers),
    concurrency: Number(values.concurrency),
    keys: Number(values.keys),
    sampleMs: Number(values.sample) * 1000,
    ...(values.quiet ? {} : { log: (line: string) => console.log(line) }),
  });
  const { references: r } = report.summary;
  console.log(
    `  references: ${String(r.cycles)} cycles, ${String(r.increments)} increments, ${String(r.last)} last dereferences, ` +
      `${String(r.callbacks)} completions ran (${String(r.callbackMismatches)} not exactly once), ` +
      `${String(r.completedTimesModified)} modifications seen by completions, ` +
      `${String(r.retriedCompletions)} retried, ${String(r.queuedCompletions)} run by recovery after the previous one`,
  );
  for (const problem of report.summary.problems) console.log(`  problem: ${problem}`);
  failed ||= !report.summary.flat || report.summary.problems.length > 0;
  rows.push(row(report));
}

const widths = header.map((title, index) =>
  Math.max(title.length, ...rows.map((cells) => (cells[index] ?? '').length)),
);
const line = (cells: readonly string[]): string =>
  `| ${cells.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join(' | ')} |`;
console.log();
console.log(line(header));
console.log(line(widths.map((width) => '-'.repeat(width))));
for (const cells of rows) console.log(line(cells));
console.log(
  '\nflat = heap after GC grows < 10% (or < 1 MB) over the second half in every worker, ' +
    'timers at the end as before the load, sockets no more than after the warm-up, server connections flat under load, nothing alive after close(), ' +
    'server connections back to where they were after the run, no lock/queue/ref/process/pending keys left.',
);
process.exitCode = failed ? 1 : 0;
