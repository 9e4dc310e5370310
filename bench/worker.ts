/**
 * One benchmark worker process: opens `lockers` connections, waits for "go"
 * on stdin, then for `durationMs` each connection takes the lock in a loop
 * (one hot key, or spread over 1000 keys) and finally prints, as JSON, the
 * completions per connection and every wait in ms.
 */
import { createInterface } from 'node:readline';
import { makeLocker, type Library } from './peers.js';

const [library, url, mode, lockersText, durationText, retryText] = process.argv.slice(2);
const lockers = await Promise.all(
  Array.from({ length: Number(lockersText) }, () =>
    makeLocker(library as Library, url ?? '', Number(retryText)),
  ),
);
process.stdout.write('ready\n');
await new Promise<void>((resolve) => {
  createInterface({ input: process.stdin }).once('line', () => {
    resolve();
  });
});
const until = performance.now() + Number(durationText);
const waits: number[] = [];
const counts = await Promise.all(
  lockers.map(async (locker) => {
    let count = 0;
    while (performance.now() < until) {
      const key = mode === 'hot' ? 'hot' : `key-${String(Math.floor(Math.random() * 1000))}`;
      waits.push(await locker.withLock(key, () => Promise.resolve()));
      count += 1;
    }
    return count;
  }),
);
await Promise.all(lockers.map((locker) => locker.close()));
process.stdout.write(`${JSON.stringify({ counts, waits })}\n`);
process.exit(0);
