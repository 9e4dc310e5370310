/**
 * One worker process of bench/scaling.ts: connects to the store URL, says
 * `ready`, waits for `go` on stdin, then runs `concurrency` loops, each
 * taking and releasing locks on random keys out of `keys`, for `seconds`
 * (after a warm-up that is not counted). Prints one JSON line: operations,
 * latency percentiles (ms), the CPU time this process used (µs), and the
 * operations that failed, by error.
 */
import { createHistogram, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { connect } from '../dist/index.js';

const [url = '', namespace = '', concurrencyText, keysText, secondsText] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
const keys = Number(keysText);
const seconds = Number(secondsText);
const WARM_UP_MS = 500;

const disref = await connect({ url, namespace, defaults: { fair: false, ttl: 10_000 } });
process.stdout.write('ready\n');
await new Promise<void>((resolve) => {
  createInterface({ input: process.stdin }).once('line', () => {
    resolve();
  });
});

const histogram = createHistogram();
const warmUpEnds = performance.now() + WARM_UP_MS;
const ends = warmUpEnds + seconds * 1000;
let operations = 0;
/** Failed operations by error message. */
const failures = new Map<string, number>();
let cpuAtStart = process.cpuUsage();
let measuring = false;
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    for (;;) {
      const now = performance.now();
      if (now >= ends) return;
      if (!measuring && now >= warmUpEnds) {
        measuring = true;
        cpuAtStart = process.cpuUsage();
      }
      const key = `key:${String(Math.floor(Math.random() * keys))}`;
      const t0 = process.hrtime.bigint();
      try {
        const lease = await disref.lock(key).acquire({ timeout: 10_000 });
        await lease.release();
      } catch (error) {
        // Counted and shown, not fatal: an overloaded store is a result too.
        if (measuring) failures.set(String(error), (failures.get(String(error)) ?? 0) + 1);
        continue;
      }
      if (measuring) {
        histogram.record(Number(process.hrtime.bigint() - t0) || 1);
        operations += 1;
      }
    }
  }),
);
const cpu = process.cpuUsage(cpuAtStart);
await disref.close();
process.stdout.write(
  `${JSON.stringify({
    operations,
    p50: histogram.percentile(50) / 1e6,
    p99: histogram.percentile(99) / 1e6,
    cpuMicros: cpu.user + cpu.system,
    failures: Object.fromEntries(failures),
  })}\n`,
);
process.exit(0);
