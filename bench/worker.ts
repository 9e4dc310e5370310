/**
 * One benchmark worker process: opens `lockers` connections, warms up and
 * prints "ready". Then, for each "go" line on stdin, each connection takes
 * the lock in a loop for `durationMs` (one hot key, or spread over 1000 keys),
 * and the process prints, as JSON, the completions per connection and every
 * wait in ms. "exit" (or the end of stdin) closes the connections and ends it.
 *
 * The benchmark keeps a worker for every run of its configuration: a fresh
 * process runs its lock code unoptimized at first, and V8 keeps compiling it
 * for seconds at a few hundred locks per second, so short runs in fresh
 * processes would measure start-up (most for the library with the most code),
 * not a long-running service.
 */
import { createInterface } from 'node:readline';
import { makeLocker, type Library } from './peers.js';

/** ms each process first takes locks of its own, before its first run. */
const WARM_UP = 2_000;

const [library, url, mode, lockersText, durationText, retryText] = process.argv.slice(2);
const lockers = await Promise.all(
  Array.from({ length: Number(lockersText) }, () =>
    makeLocker(library as Library, url ?? '', Number(retryText)),
  ),
);

/** Every locker takes the lock in a loop until `until`; resolves completions per locker. */
function loop(until: number, key: (index: number) => string, waits?: number[]): Promise<number[]> {
  return Promise.all(
    lockers.map(async (locker, index) => {
      let count = 0;
      while (performance.now() < until) {
        const waited = await locker.withLock(key(index), () => Promise.resolve());
        waits?.push(waited);
        count += 1;
      }
      return count;
    }),
  );
}

// The keys the runs will take: on the hot key, the processes of a pool warm up
// together, so the code of hand-offs between processes is compiled too.
await loop(performance.now() + WARM_UP, (index) =>
  mode === 'hot' ? 'hot' : `warm-up-${String(process.pid)}-${String(index)}`,
);
process.stdout.write('ready\n');

for await (const line of createInterface({ input: process.stdin })) {
  if (line !== 'go') break;
  const waits: number[] = [];
  const counts = await loop(
    performance.now() + Number(durationText),
    () => (mode === 'hot' ? 'hot' : `key-${String(Math.floor(Math.random() * 1000))}`),
    waits,
  );
  process.stdout.write(`${JSON.stringify({ counts, waits })}\n`);
}
await Promise.all(lockers.map((locker) => locker.close()));
process.exit(0);
