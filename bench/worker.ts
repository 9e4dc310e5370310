/**
 * One benchmark worker process: waits for "go" on stdin, then takes the lock
 * `count` times (on one hot key, or spread over many keys) and prints its
 * timings as JSON.
 */
import { createInterface } from 'node:readline';
import { makeLocker, type Library } from './peers.js';

const [library, url, mode, countText] = process.argv.slice(2);
const count = Number(countText);
const locker = await makeLocker(library as Library, url ?? '');
process.stdout.write('ready\n');
await new Promise<void>((resolve) => {
  createInterface({ input: process.stdin }).once('line', () => {
    resolve();
  });
});
const latencies: number[] = [];
const started = performance.now();
for (let i = 0; i < count; i++) {
  const key = mode === 'hot' ? 'hot' : `key-${String(Math.floor(Math.random() * 1000))}`;
  const t0 = performance.now();
  await locker.withLock(key, () => Promise.resolve());
  latencies.push(performance.now() - t0);
}
const elapsedMs = performance.now() - started;
await locker.close();
process.stdout.write(`${JSON.stringify({ elapsedMs, latencies })}\n`);
process.exit(0);
