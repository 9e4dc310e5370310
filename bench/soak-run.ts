/**
 * The soak run behind `npm run soak` (bench/soak.ts) and its short version
 * in CI (test/soak.test.ts): starts a real server (redis-server or
 * memcached, through the test harness), runs worker processes
 * (bench/soak-worker.ts) with many concurrent callers over many keys for a
 * bounded time, samples both sides every few seconds, and judges whether
 * memory, handles and connections stay flat and nothing is left behind.
 *
 * The rule for "flat" (stated in docs/reliability.md too):
 * - heap: in every worker, heapUsed after a forced GC grows by less than
 *   `heapGrowth` (a fraction) over the second half of the run, from the
 *   middle sample to the last one under load (or by less than
 *   `heapSlackBytes`, so a few hundred KB of noise on a small heap does not
 *   count);
 * - handles: in every worker, once the load stopped and lingering timers
 *   lapsed, the active timers (process.getActiveResourcesInfo) are as many
 *   as right before the load, and the open sockets no more than after the
 *   warm-up (the wake-up connection opens on the first wait and stays; an
 *   idle client may unref its sockets, which are then not listed);
 * - close: after close() the leak census (async_hooks: timers, including
 *   unref'd ones, and sockets) finds nothing alive, and no socket or timer is
 *   active;
 * - server: the server's client connections do not grow under load after
 *   the warm-up, are back to what they were before the workers started once
 *   they exited, and no lock, queue, reference, process or
 *   pending-completion key is left (lock fences stay on purpose: they must
 *   outlive the lock to stay monotonic).
 * @module
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { MemcachedServer, memcachedUnavailable } from '../test/harness/memcached-server.js';
import { markMemcachedNamespaceFresh } from '../test/harness/memcached-target.js';
import { RedisServer, redisUnavailable } from '../test/harness/servers.js';
import { markNamespaceFresh } from '../test/harness/targets.js';

export type SoakBackend = 'memory' | 'redis' | 'memcached';
export type OperationKind =
  'lock' | 'tryAcquire' | 'rlock' | 'read' | 'write' | 'extended' | 'reference';

/** What one worker process is told (as JSON in argv). */
export interface WorkerConfig {
  readonly url: string;
  readonly namespace: string;
  /** Disref instances in the process (several only on memory, where they share the store). */
  readonly instances: number;
  /** Concurrent callers per instance. */
  readonly concurrency: number;
  readonly keys: number;
  readonly seconds: number;
  readonly sampleMs: number;
  /** Longest wait for a lock; a LockTimeoutError is counted, not an error. */
  readonly timeoutMs: number;
  readonly heartbeatInterval: number;
  readonly processTtl: number;
  /** Runs the leak census (async_hooks) for the whole run. */
  readonly census: boolean;
}

/** Reference cycles of one worker and their completions. */
export interface ReferenceTally {
  /** reference → incrementTimesModified → dereference cycles that finished. */
  cycles: number;
  increments: number;
  /** Dereferences that were the last (and so ran the completion). */
  last: number;
  /** Completion callbacks that ran. */
  callbacks: number;
  /** Dereferences whose callback ran other than once when last, never otherwise. */
  callbackMismatches: number;
  /** Sum of timesModified seen by the completions. */
  completedTimesModified: number;
  /** Completions run with attempt > 1 (a retry: nothing failed, so none expected). */
  retriedCompletions: number;
  /**
   * Completions recovery ran (the `onComplete` handler) for lifetimes that
   * began and ended while the previous lifetime's completion ran: their last
   * dereference could not run them (README, "Lifetimes").
   */
  queuedCompletions: number;
}

/** A tally with nothing counted yet. */
export function emptyReferenceTally(): ReferenceTally {
  return {
    cycles: 0,
    increments: 0,
    last: 0,
    callbacks: 0,
    callbackMismatches: 0,
    completedTimesModified: 0,
    retriedCompletions: 0,
    queuedCompletions: 0,
  };
}

export interface WorkerSample {
  readonly type: 'sample';
  /** Seconds since the load started. */
  readonly t: number;
  readonly operations: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly heapUsed: number;
  readonly rss: number;
  readonly resources: Record<string, number>;
}

export interface WorkerResult {
  readonly type: 'result';
  /** Seconds the load ran. */
  readonly seconds: number;
  readonly operations: Record<string, number>;
  readonly timeouts: Record<string, number>;
  /** Messages of unexpected errors, background errors and warnings, with how often each came. */
  readonly errors: Record<string, number>;
  /** Operations that failed with something else than LockTimeoutError. */
  readonly errorCount: number;
  /** Errors reported through `onError` (failed heartbeats, recovery). */
  readonly backgroundErrors: number;
  readonly warnings: number;
  readonly exclusionViolations: number;
  readonly references: ReferenceTally;
  /** Latency of one operation (ms), whole run. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly handlesStart: Record<string, number>;
  readonly handlesEnd: Record<string, number>;
  readonly aliveAfterClose: string[];
  readonly resourcesAfterClose: Record<string, number>;
}

/** The server side at one moment. */
export interface ServerSample {
  readonly t: number;
  readonly connections: number;
  /** Redis `used_memory`; memcached `bytes`. */
  readonly memoryBytes: number;
  /** Redis DBSIZE; memcached `curr_items`. */
  readonly items: number;
}

export interface SoakOptions {
  readonly backend: SoakBackend;
  readonly seconds: number;
  /** Worker OS processes (on memory: Disref instances in the one process). @default 4 */
  readonly workers?: number;
  /** Concurrent callers per worker. @default 32 */
  readonly concurrency?: number;
  /** Keys per lock kind, and resources. @default 1000 */
  readonly keys?: number;
  /** @default 5000 */
  readonly sampleMs?: number;
  /** @default 5000 */
  readonly timeoutMs?: number;
  /** Largest allowed heap growth over the second half, as a fraction. @default 0.1 */
  readonly heapGrowth?: number;
  /** Heap growth below this many bytes is noise, whatever the fraction. @default 1 MiB */
  readonly heapSlackBytes?: number;
  /** Called with each line of progress. */
  readonly log?: (line: string) => void;
}

export interface WorkerReport {
  readonly samples: WorkerSample[];
  readonly result: WorkerResult;
}

export interface SoakReport {
  readonly options: Required<Omit<SoakOptions, 'log'>>;
  readonly workers: WorkerReport[];
  readonly server: {
    readonly samples: ServerSample[];
    /** Before the workers started, and after they all exited. */
    readonly connectionsBefore: number;
    readonly connectionsAfter: number;
    /** Keys (Redis) or items (memcached) left after the run, by kind. */
    readonly left: Record<string, number>;
  } | null;
  readonly summary: SoakSummary;
}

export interface SoakSummary {
  readonly operations: number;
  readonly opsPerSecond: number;
  /** Worst worker's percentiles (ms). */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly timeouts: number;
  readonly errors: number;
  /** Heap after GC (bytes), summed over workers: first sample, middle, last under load. */
  readonly heapStart: number;
  readonly heapMiddle: number;
  readonly heapEnd: number;
  /** Largest growth of one worker's heap over the second half, as a fraction. */
  readonly heapGrowth: number;
  readonly rssStart: number;
  readonly rssEnd: number;
  /** Per worker, `sockets/timers` after the warm-up (timers: before the load) and at the end. */
  readonly handlesStart: string;
  readonly handlesEnd: string;
  /** Timers and sockets alive after close() (census) or still active, summed. */
  readonly aliveAfterClose: number;
  readonly references: ReferenceTally;
  readonly exclusionViolations: number;
  readonly checks: Record<'heap' | 'handles' | 'close' | 'server', boolean>;
  readonly flat: boolean;
  /** What is wrong, in words; empty when flat and correct. */
  readonly problems: string[];
}

const workerFile = fileURLToPath(new URL('./soak-worker.ts', import.meta.url));

/** Why `backend` cannot run here, or undefined. */
export function soakUnavailable(backend: SoakBackend): string | undefined {
  if (backend === 'redis') return redisUnavailable();
  if (backend === 'memcached') return memcachedUnavailable();
  return undefined;
}

/** The server under the run, sampled from an admin connection of its own. */
interface Store {
  readonly url: string;
  prepare(namespace: string): Promise<void>;
  sample(t: number): Promise<ServerSample>;
  left(namespace: string): Promise<Record<string, number>>;
  dispose(): Promise<void>;
}

function infoField(info: string, field: string): number {
  return Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
}

async function redisStore(): Promise<Store> {
  const server = await RedisServer.start();
  const admin = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
  await admin.connect();
  return {
    url: server.url,
    prepare: (namespace) => markNamespaceFresh(admin, namespace),
    sample: async (t) => ({
      t,
      connections: infoField(await admin.info('clients'), 'connected_clients'),
      memoryBytes: infoField(await admin.info('memory'), 'used_memory'),
      items: await admin.dbsize(),
    }),
    left: async (namespace) => {
      const left: Record<string, number> = {};
      let cursor = '0';
      do {
        const [next, keys] = await admin.scan(cursor, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) {
          // ns:{k:key}:fence -> fence; {ns}:process:<id> -> process; other -> the key itself
          const kind = key.startsWith(`{${namespace}}:`)
            ? (key.slice(namespace.length + 3).split(':')[0] ?? key)
            : (/:([a-z]+)$/.exec(key)?.[1] ?? key);
          left[kind] = (left[kind] ?? 0) + 1;
        }
      } while (cursor !== '0');
      return left;
    },
    dispose: async () => {
      admin.disconnect();
      await server.dispose();
    },
  };
}

async function memcachedStore(): Promise<Store> {
  const server = await MemcachedServer.start();
  const admin = new MemcachedClient({
    servers: [{ host: '127.0.0.1', port: server.port }],
    connectionsPerServer: 1,
  });
  const stats = (): Promise<ReadonlyMap<string, string>> => admin.stats(admin.serverFor('stats'));
  const url = `memcached://${server.hostPort}`;
  return {
    url,
    prepare: (namespace) => markMemcachedNamespaceFresh(url, namespace),
    sample: async (t) => {
      const stat = await stats();
      return {
        t,
        connections: Number(stat.get('curr_connections')),
        memoryBytes: Number(stat.get('bytes')),
        items: Number(stat.get('curr_items')),
      };
    },
    left: async (namespace) => {
      const left: Record<string, number> = {};
      for (const { key, expires } of await memcachedKeys(server.port)) {
        // ns:f:key -> fence; ns:~epoch -> marker; items that expire by themselves are told apart
        const rest = key.startsWith(`${namespace}:`) ? key.slice(namespace.length + 1) : key;
        const kind = rest.startsWith('~') ? rest.slice(1) : (MEMCACHED_TAGS[rest[0] ?? ''] ?? rest);
        const name = `${kind === 'epoch' ? 'marker' : kind}${expires ? ' (expiring)' : ''}`;
        left[name] = (left[name] ?? 0) + 1;
      }
      return left;
    },
    dispose: async () => {
      admin.close();
      await server.stop();
    },
  };
}

/** What the one-letter tags of memcached item names stand for (src/backends/memcached/keys.ts). */
const MEMCACHED_TAGS: Record<string, string> = {
  l: 'lock',
  f: 'fence',
  p: 'process',
  h: 'held',
  r: 'ref',
};

/** The live items of a memcached server (`lru_crawler metadump all`), and whether each expires. */
function memcachedKeys(port: number): Promise<{ key: string; expires: boolean }[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let received = '';
    socket.setEncoding('latin1');
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write('lru_crawler metadump all\r\n');
    });
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (!received.endsWith('END\r\n') && !received.startsWith('ERROR')) return;
      socket.destroy();
      resolve(
        [...received.matchAll(/^key=(\S+) exp=(-?\d+)/gm)].map((match) => ({
          key: decodeURIComponent(match[1] ?? ''),
          expires: match[2] !== '-1',
        })),
      );
    });
  });
}

interface Worker {
  readonly samples: WorkerSample[];
  ready: Promise<void>;
  result: Promise<WorkerResult>;
  go(): void;
  kill(): void;
}

function startWorker(config: WorkerConfig, log: (line: string) => void, index: number): Worker {
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', workerFile, JSON.stringify(config)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const samples: WorkerSample[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  let resolveReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    resolveReady = resolve;
  });
  let result: WorkerResult | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { type: string };
    if (message.type === 'ready') resolveReady();
    else if (message.type === 'sample') {
      const sample = message as WorkerSample;
      samples.push(sample);
      log(
        `  worker ${String(index)} t=${sample.t.toFixed(0)}s ops=${String(sample.operations)} ` +
          `heap=${mb(sample.heapUsed)} rss=${mb(sample.rss)} ${handles(sample.resources)}`,
      );
    } else if (message.type === 'result') result = message as WorkerResult;
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const failed = exited.then(([code, signal]) => {
    throw new Error(
      `soak worker ${String(index)} exited (${String(code ?? signal)}) ${result === undefined ? 'without a result' : ''}: ${stderr}`,
    );
  });
  return {
    samples,
    ready: Promise.race([ready, failed]),
    result: exited.then(([code, signal]) => {
      if (code !== 0 || result === undefined) {
        throw new Error(
          `soak worker ${String(index)} exited (${String(code ?? signal)}) without a result: ${stderr}`,
        );
      }
      return result;
    }),
    go: () => {
      child.stdin.end('go\n');
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Runs one soak and judges it. Throws only when it cannot run (a server or a worker failed). */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const resolved = {
    backend: options.backend,
    seconds: options.seconds,
    workers: options.workers ?? 4,
    concurrency: options.concurrency ?? 32,
    keys: options.keys ?? 1000,
    sampleMs: options.sampleMs ?? 5000,
    timeoutMs: options.timeoutMs ?? 5000,
    heapGrowth: options.heapGrowth ?? 0.1,
    heapSlackBytes: options.heapSlackBytes ?? 1024 * 1024,
  };
  const log = options.log ?? (() => undefined);
  const store =
    resolved.backend === 'redis'
      ? await redisStore()
      : resolved.backend === 'memcached'
        ? await memcachedStore()
        : undefined;
  const namespace = `soak-${String(process.pid)}-${String(Date.now())}`;
  const workers: Worker[] = [];
  try {
    await store?.prepare(namespace);
    const config: WorkerConfig = {
      url: store?.url ?? `memory://${namespace}`,
      namespace,
      instances: store === undefined ? resolved.workers : 1,
      concurrency: resolved.concurrency,
      keys: resolved.keys,
      seconds: resolved.seconds,
      sampleMs: resolved.sampleMs,
      timeoutMs: resolved.timeoutMs,
      heartbeatInterval: 1_000,
      processTtl: 15_000,
      census: process.env.DISREF_SOAK_CENSUS !== '0',
    };
    const before = store === undefined ? undefined : await settledSample(store);
    const processes = store === undefined ? 1 : resolved.workers;
    for (let index = 0; index < processes; index++) {
      workers.push(startWorker(config, log, index));
    }
    await Promise.all(workers.map((worker) => worker.ready));
    const started = performance.now();
    for (const worker of workers) worker.go();
    const serverSamples: ServerSample[] = before === undefined ? [] : [before];
    const results = Promise.all(workers.map((worker) => worker.result));
    let finished = false;
    void results.then(
      () => (finished = true),
      () => (finished = true),
    );
    if (store !== undefined) {
      while (!finished) {
        await Promise.race([sleep(resolved.sampleMs), results.catch(() => undefined)]);
        if (finished) break;
        const sample = await store.sample((performance.now() - started) / 1000);
        serverSamples.push(sample);
        log(
          `  server t=${sample.t.toFixed(0)}s connections=${String(sample.connections)} ` +
            `memory=${mb(sample.memoryBytes)} items=${String(sample.items)}`,
        );
      }
    }
    const workerResults = await results;
    let server: SoakReport['server'] = null;
    if (store !== undefined && before !== undefined) {
      // The server notices closed sockets a moment later.
      let after = await store.sample((performance.now() - started) / 1000);
      for (let i = 0; i < 40 && after.connections > before.connections; i++) {
        await sleep(50);
        after = await store.sample((performance.now() - started) / 1000);
      }
      serverSamples.push(after);
      server = {
        samples: serverSamples,
        connectionsBefore: before.connections,
        connectionsAfter: after.connections,
        left: await store.left(namespace),
      };
    }
    const reports = workers.map((worker, index) => ({
      samples: worker.samples,
      result: workerResults[index] as WorkerResult,
    }));
    return {
      options: resolved,
      workers: reports,
      server,
      summary: summarize(resolved, reports, server),
    };
  } finally {
    for (const worker of workers) worker.kill();
    await store?.dispose();
  }
}

/** Sockets and timers: the resources whose count must not drift. */
const WATCHED = ['TCPSocketWrap', 'Timeout'];

function handles(resources: Record<string, number>): string {
  return (
    Object.entries(resources)
      .filter(([type]) => WATCHED.includes(type))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([type, count]) => `${type}=${String(count)}`)
      .join(' ') || 'none'
  );
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

/** Redis keys that must not outlive the run (fences, the marker and the process registry may). */
const TRANSIENT_KEYS = ['lock', 'queue', 'ref', 'process', 'held', 'pending'];

function summarize(
  options: SoakReport['options'],
  workers: readonly WorkerReport[],
  server: SoakReport['server'],
): SoakSummary {
  const problems: string[] = [];
  const results = workers.map((worker) => worker.result);
  const operations = sum(results.map((result) => sum(Object.values(result.operations))));
  const seconds = Math.max(...results.map((result) => result.seconds));
  // Heap: the first sample after a warm-up (a fifth of the run, at most 20 s), the middle, the last.
  const warmUp = Math.min(options.seconds / 5, 20);
  const at = (samples: readonly WorkerSample[], t: number): WorkerSample | undefined =>
    samples.find((sample) => sample.t >= t) ?? samples.at(-1);
  const heaps = workers.map(({ samples }) => ({
    start: at(samples, warmUp),
    middle: at(samples, options.seconds / 2),
    end: samples.at(-1),
  }));
  let heapGrowth = 0;
  let heapOk = true;
  heaps.forEach(({ middle, end }, index) => {
    if (middle === undefined || end === undefined) return;
    const growth = (end.heapUsed - middle.heapUsed) / middle.heapUsed;
    heapGrowth = Math.max(heapGrowth, growth);
    if (growth >= options.heapGrowth && end.heapUsed - middle.heapUsed >= options.heapSlackBytes) {
      heapOk = false;
      problems.push(
        `worker ${String(index)}: heap grew ${(growth * 100).toFixed(1)}% over the second half (${mb(middle.heapUsed)} -> ${mb(end.heapUsed)})`,
      );
    }
  });
  let handlesOk = true;
  let closeOk = true;
  const idle = workers.map(({ samples, result }) => {
    const sockets = at(samples, warmUp)?.resources.TCPSocketWrap ?? 0;
    const timers = result.handlesStart.Timeout ?? 0;
    const endSockets = result.handlesEnd.TCPSocketWrap ?? 0;
    const endTimers = result.handlesEnd.Timeout ?? 0;
    return {
      start: `${String(sockets)}/${String(timers)}`,
      end: `${String(endSockets)}/${String(endTimers)}`,
      // An idle client may unref its sockets (then they are not listed): fewer is fine.
      ok: endSockets <= sockets && endTimers === timers,
    };
  });
  results.forEach((result, index) => {
    const { start, end, ok } = idle[index] ?? { start: '', end: '', ok: false };
    if (!ok) {
      handlesOk = false;
      problems.push(
        `worker ${String(index)}: sockets/timers after the warm-up ${start}, at the end ${end}`,
      );
    }
    const stillActive = Object.entries(result.resourcesAfterClose).filter(([type]) =>
      WATCHED.includes(type),
    );
    if (result.aliveAfterClose.length > 0 || stillActive.length > 0) {
      closeOk = false;
      problems.push(
        `worker ${String(index)}: after close() alive ${result.aliveAfterClose.join(', ') || '-'}; active ${handles(Object.fromEntries(stillActive))}`,
      );
    }
    if (result.errorCount > 0) {
      problems.push(
        `worker ${String(index)}: ${String(result.errorCount)} unexpected error(s): ${JSON.stringify(result.errors)}`,
      );
    }
    if (result.backgroundErrors > 0) {
      problems.push(
        `worker ${String(index)}: ${String(result.backgroundErrors)} background error(s) (heartbeat, recovery): ${JSON.stringify(result.errors)}`,
      );
    }
    if (result.exclusionViolations > 0) {
      problems.push(
        `worker ${String(index)}: ${String(result.exclusionViolations)} overlapping exclusive section(s)`,
      );
    }
  });
  const references = emptyReferenceTally();
  for (const result of results) {
    for (const key of Object.keys(references) as (keyof ReferenceTally)[]) {
      references[key] += result.references[key];
    }
  }
  if (references.callbackMismatches > 0) {
    problems.push(
      `${String(references.callbackMismatches)} dereference(s) ran their completion other than once when last`,
    );
  }
  if (references.retriedCompletions > 0) {
    problems.push(
      `${String(references.retriedCompletions)} retried completion(s), though nothing failed`,
    );
  }
  if (references.completedTimesModified > references.increments) {
    problems.push(
      `completions saw ${String(references.completedTimesModified)} modifications, more than the ${String(references.increments)} made: a lifetime completed twice`,
    );
  }
  let serverOk = true;
  if (server !== null) {
    const underLoad = server.samples.slice(1, -1); // without the samples before and after
    const warm = underLoad.find((sample) => sample.t >= warmUp) ?? underLoad.at(-1);
    const late = underLoad.at(-1);
    if (warm !== undefined && late !== undefined && late.connections > warm.connections) {
      serverOk = false;
      problems.push(
        `server connections grew under load: ${String(warm.connections)} after the warm-up, ${String(late.connections)} at the end`,
      );
    }
    if (server.connectionsAfter !== server.connectionsBefore) {
      serverOk = false;
      problems.push(
        `server connections ${String(server.connectionsBefore)} before the run, ${String(server.connectionsAfter)} after it`,
      );
    }
    const transient = Object.entries(server.left).filter(([kind]) => TRANSIENT_KEYS.includes(kind));
    if (transient.length > 0) {
      serverOk = false;
      problems.push(`keys left in the store: ${JSON.stringify(Object.fromEntries(transient))}`);
    }
  }
  const handlesStart = idle.map(({ start }) => start).join(', ');
  const handlesEnd = idle.map(({ end }) => end).join(', ');
  const heapSum = (which: 'start' | 'middle' | 'end'): number =>
    sum(heaps.map((heap) => heap[which]?.heapUsed ?? 0));
  const checks = { heap: heapOk, handles: handlesOk, close: closeOk, server: serverOk };
  return {
    operations,
    opsPerSecond: operations / seconds,
    p50: Math.max(...results.map((result) => result.p50)),
    p99: Math.max(...results.map((result) => result.p99)),
    max: Math.max(...results.map((result) => result.max)),
    timeouts: sum(results.map((result) => sum(Object.values(result.timeouts)))),
    errors: sum(results.map((result) => result.errorCount + result.backgroundErrors)),
    heapStart: heapSum('start'),
    heapMiddle: heapSum('middle'),
    heapEnd: heapSum('end'),
    heapGrowth,
    rssStart: sum(workers.map(({ samples }) => at(samples, warmUp)?.rss ?? 0)),
    rssEnd: sum(workers.map(({ samples }) => samples.at(-1)?.rss ?? 0)),
    handlesStart,
    handlesEnd,
    aliveAfterClose: sum(
      results.map(
        (result) =>
          result.aliveAfterClose.length +
          sum(
            Object.entries(result.resourcesAfterClose)
              .filter(([type]) => WATCHED.includes(type))
              .map(([, count]) => count),
          ),
      ),
    ),
    references,
    exclusionViolations: sum(results.map((result) => result.exclusionViolations)),
    checks,
    flat: Object.values(checks).every(Boolean),
    problems,
  };
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * A server sample once its connection count holds still: a connection closed
 * just before (the namespace marker's, the start-up probe's) is counted until
 * the server notices, and would make the run look as if it closed one.
 */
async function settledSample(store: Store): Promise<ServerSample> {
  let sample = await store.sample(0);
  for (let i = 0; i < 20; i++) {
    await sleep(100);
    const next = await store.sample(0);
    if (next.connections === sample.connections) return next;
    sample = next;
  }
  return sample;
}
