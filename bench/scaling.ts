/**
 * Scaling benchmark: lock throughput with many keys on one Redis server,
 * on three shards (`redis-sharded://`), on a three-server quorum
 * (`redis-quorum://`), and on a three-primary Redis Cluster
 * (`redis-cluster://`, when `redis-cli` is there to build one).
 *
 *   npm run bench:scaling                 # 4 worker processes x 16 loops, 3 rounds of 5 s
 *   npm run bench:scaling -- --quick      # 1 round of 2 s
 *   npm run bench:scaling -- --workers 2 --concurrency 32 --keys 100000
 *
 * Every setup runs the same OS worker processes (bench/scaling-worker.ts),
 * each with concurrent loops that acquire and release a lock on a random
 * key out of many (contention is rare: this measures what the stores and
 * the clients can push through, not waiting). Beside throughput and
 * latency, the table shows the CPU the redis-server processes and the
 * worker processes used, in cores and per lock: on a machine with few
 * cores, that says which side ran out first. The last column extrapolates
 * what the servers alone could take (each busy for one full core, at the
 * measured cost per lock), which is where sharding would pay off given
 * enough client machines.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Cluster, Redis } from 'ioredis';
import { RedisServer, redisUnavailable } from '../test/harness/servers.js';
import { RedisServerSet } from '../test/harness/redis-set-target.js';
import { markNamespaceFresh } from '../test/harness/targets.js';
import {
  closeCluster,
  RedisCluster,
  redisClusterUnavailable,
} from '../test/harness/redis-cluster.js';
import { markClusterNamespaceFresh } from '../test/harness/redis-cluster-target.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    workers: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '16' },
    keys: { type: 'string', default: '10000' },
    seconds: { type: 'string' },
    rounds: { type: 'string' },
  },
});
const WORKERS = Number(values.workers);
const CONCURRENCY = Number(values.concurrency);
const KEYS = Number(values.keys);
const SECONDS = Number(values.seconds ?? (values.quick ? '2' : '5'));
/** Each setup runs this many times, interleaved with the others; the median run is shown. */
const ROUNDS = Number(values.rounds ?? (values.quick ? '1' : '3'));
const worker = new URL('./scaling-worker.ts', import.meta.url).pathname;

interface Setup {
  readonly name: string;
  readonly servers: number;
  readonly url: string;
  /** Makes a fresh namespace usable at once (the servers just started). */
  readonly prepare: (namespace: string) => Promise<void>;
  /** Admin clients of the redis-server processes doing the work, for their CPU time. */
  readonly admins: readonly Redis[];
}

interface Result {
  readonly setup: Setup;
  readonly opsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  /** Cores used by all redis-server processes together, and by the busiest one. */
  readonly serverCores: number;
  readonly busiestServerCores: number;
  readonly clientCores: number;
  /** Operations that failed (error message, count), per worker. */
  readonly failures: readonly [string, number][];
}

/** CPU time (ms) a local process used so far, from /proc (Linux); undefined elsewhere. */
function cpuMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
      .split(') ')[1]
      ?.split(' ');
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return ((Number(fields?.[11]) + Number(fields?.[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

async function serverPid(admin: Redis): Promise<number> {
  const info = await admin.info('server');
  return Number(/process_id:(\d+)/.exec(info)?.[1]);
}

async function run(setup: Setup, round: number): Promise<Result> {
  const namespace = `scaling-${String(round)}-${String(process.pid)}`;
  await setup.prepare(namespace);
  const children = Array.from({ length: WORKERS }, () =>
    spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        worker,
        setup.url,
        namespace,
        String(CONCURRENCY),
        String(KEYS),
        String(SECONDS),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    ),
  );
  try {
    return await measure(setup, children, namespace);
  } finally {
    // A worker that failed must not leave the others (and this process) running.
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function measure(
  setup: Setup,
  children: readonly ChildProcessByStdio<Writable, Readable, null>[],
  namespace: string,
): Promise<Result> {
  const lines = children.map((child) =>
    createInterface({ input: child.stdout })[Symbol.asyncIterator](),
  );
  for (const line of lines) {
    const first = await line.next();
    if (first.value !== 'ready') throw new Error(`worker said ${String(first.value)}`);
  }
  const pids = await Promise.all(setup.admins.map(serverPid));
  for (const child of children) child.stdin.end('go\n');
  // The workers warm up for 0.5 s before they count; so does the server CPU reading.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const before = pids.map((pid) => cpuMs(pid) ?? 0);
  const started = performance.now();
  const reports = await Promise.all(
    lines.map(async (line) => {
      const report = await line.next();
      if (report.done === true) throw new Error(`a worker of ${setup.name} (${namespace}) died`);
      return JSON.parse(String(report.value)) as {
        operations: number;
        p50: number;
        p99: number;
        cpuMicros: number;
        failures: Record<string, number>;
      };
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const used = pids.map((pid, index) => ((cpuMs(pid) ?? 0) - (before[index] ?? 0)) / 1000);
  const operations = reports.reduce((sum, report) => sum + report.operations, 0);
  return {
    setup,
    opsPerSecond: operations / SECONDS,
    p50: Math.max(...reports.map((report) => report.p50)),
    p99: Math.max(...reports.map((report) => report.p99)),
    serverCores: used.reduce((sum, seconds) => sum + seconds, 0) / elapsed,
    busiestServerCores: Math.max(...used) / elapsed,
    clientCores: reports.reduce((sum, report) => sum + report.cpuMicros, 0) / 1e6 / SECONDS,
    failures: reports.flatMap((report) => Object.entries(report.failures)),
  };
}

function table(results: readonly Result[]): string {
  const base = results[0]?.opsPerSecond ?? 1;
  const header = [
    'setup',
    'servers',
    'locks/s',
    'vs 1 server',
    'p50 ms',
    'p99 ms',
    'redis CPU, cores (all / busiest)',
    'client CPU, cores',
    'redis CPU µs per lock',
    'client CPU µs per lock',
    'server-bound ceiling, locks/s',
  ];
  const perLock = (cores: number, result: Result): string =>
    ((cores * 1e6) / result.opsPerSecond).toFixed(0);
  const rows = results.map((result) => [
    result.setup.name,
    String(result.setup.servers),
    result.opsPerSecond.toFixed(0),
    `${(result.opsPerSecond / base).toFixed(2)}x`,
    result.p50.toFixed(2),
    result.p99.toFixed(2),
    `${result.serverCores.toFixed(2)} / ${result.busiestServerCores.toFixed(2)}`,
    result.clientCores.toFixed(2),
    perLock(result.serverCores, result),
    perLock(result.clientCores, result),
    // Every server busy for a full core, at the server CPU per lock measured here.
    ((result.setup.servers * result.opsPerSecond) / result.serverCores).toFixed(0),
  ]);
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => row[column]?.length ?? 0)),
  );
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [
    line(header),
    line(widths.map((width) => '-'.repeat(width))),
    ...rows.map((row) => line(row)),
  ].join('\n');
}

const missing = redisUnavailable();
if (missing !== undefined) {
  console.error(missing);
  process.exit(1);
}
const set = await RedisServerSet.start(3);
const first = set.admins[0];
const firstServer: RedisServer | undefined = set.servers[0];
if (first === undefined || firstServer === undefined) throw new Error('no server started');
const setups: Setup[] = [
  {
    name: 'redis://',
    servers: 1,
    url: firstServer.url,
    prepare: (namespace) => markNamespaceFresh(first, namespace),
    admins: [first],
  },
  {
    name: 'redis-sharded://',
    servers: 3,
    url: set.url('redis-sharded'),
    prepare: (namespace) => set.markFresh(namespace),
    admins: set.admins,
  },
  {
    name: 'redis-quorum://',
    servers: 3,
    url: set.url('redis-quorum'),
    prepare: (namespace) => set.markFresh(namespace),
    admins: set.admins,
  },
];
let cluster: RedisCluster | undefined;
let clusterAdmin: Cluster | undefined;
const clusterAdmins: Redis[] = [];
if (redisClusterUnavailable() === undefined) {
  cluster = await RedisCluster.start({ primaries: 3 });
  const admin = cluster.client();
  clusterAdmin = admin;
  await admin.connect();
  clusterAdmins.push(...cluster.nodes.map((node) => cluster?.connectTo(node) as Redis));
  await Promise.all(clusterAdmins.map((node) => node.connect()));
  setups.push({
    name: 'redis-cluster://',
    servers: 3,
    url: cluster.url,
    prepare: (namespace) => markClusterNamespaceFresh(admin, namespace),
    admins: clusterAdmins,
  });
} else {
  console.warn(`skipping redis-cluster://: ${String(redisClusterUnavailable())}`);
}

console.log(
  `${String(WORKERS)} worker processes x ${String(CONCURRENCY)} concurrent loops, ` +
    `${String(KEYS)} keys, ${String(SECONDS)} s per setup, acquire + release per operation; ` +
    `${String(os.availableParallelism())} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ` +
    `load ${os.loadavg()[0]?.toFixed(2) ?? '?'} at start`,
);
const runs = new Map<Setup, Result[]>(setups.map((setup) => [setup, []]));
try {
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved, so that load from elsewhere on the machine falls on every setup alike.
    for (const [index, setup] of setups.entries()) {
      const result = await run(setup, round * setups.length + index);
      runs.get(setup)?.push(result);
      const failed = result.failures.reduce((sum, [, count]) => sum + count, 0);
      console.log(
        `  round ${String(round + 1)}: ${setup.name} ${result.opsPerSecond.toFixed(0)} locks/s` +
          (failed === 0 ? '' : `, ${String(failed)} failed: ${result.failures[0]?.[0] ?? ''}`),
      );
    }
  }
  const medians = setups.map((setup) => {
    const sorted = [...(runs.get(setup) ?? [])].sort((a, b) => a.opsPerSecond - b.opsPerSecond);
    const median = sorted[Math.floor(sorted.length / 2)];
    if (median === undefined) throw new Error(`no run of ${setup.name}`);
    return median;
  });
  console.log(`\n${table(medians)}\n(median of ${String(ROUNDS)} run(s) per setup)`);
} finally {
  for (const admin of clusterAdmins) admin.disconnect();
  if (clusterAdmin !== undefined) closeCluster(clusterAdmin);
  await cluster?.dispose();
  await set.dispose();
}
