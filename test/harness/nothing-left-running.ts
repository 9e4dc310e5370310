/**
 * Loaded into every test file (`--import`, see package.json): once a file's
 * tests are done, whatever still keeps its process alive (a socket, a child
 * process, a timer) must be gone within a few seconds, or the file fails,
 * naming each one. Without this, a leaked handle (say a client left
 * reconnecting to a stopped server) hangs the whole run with no word of
 * which file or what; `--test-force-exit` then ends the process.
 * This hook runs before a file's own top-level `after` hooks, so a file
 * stops its servers in the `after` of a `describe`, as every file here does.
 */
import { relative } from 'node:path';
import { after } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

/** Servers being stopped and sockets being closed get this long to finish. */
const GRACE_MS = 10_000;

interface Describable {
  readonly constructor: { readonly name: string };
}

/** What keeps the process alive now, described; the test runner's own stdio excluded. */
function keepingAlive(): string[] {
  const stdio = new Set<unknown>([process.stdin, process.stdout, process.stderr]);
  const handles = (process as unknown as { _getActiveHandles(): Describable[] })
    ._getActiveHandles()
    .filter((handle) => !stdio.has(handle))
    .map(describe);
  // Only referenced timers are counted here: unref'd ones never hold the process.
  const timers = process.getActiveResourcesInfo().filter((name) => name === 'Timeout');
  return [...handles, ...timers.map(() => 'a timer')];
}

function describe(handle: Describable): string {
  const socket = handle as Partial<{ remoteAddress: string; remotePort: number }>;
  if (typeof socket.remotePort === 'number') {
    return `a socket to ${socket.remoteAddress ?? '?'}:${String(socket.remotePort)}`;
  }
  const child = handle as Partial<{ spawnargs: string[]; pid: number }>;
  if (Array.isArray(child.spawnargs)) {
    return `child process ${String(child.pid)} (${child.spawnargs.join(' ')})`;
  }
  return `a ${handle.constructor.name}`;
}

after(async () => {
  const until = Date.now() + GRACE_MS;
  let left = keepingAlive();
  while (left.length > 0 && Date.now() < until) {
    // This timer has fired by the time the next count is taken: it never counts itself.
    await sleep(50);
    left = keepingAlive();
  }
  if (left.length > 0) {
    throw new Error(
      `${relative(process.cwd(), process.argv[1] ?? '?')}: still keeping its process alive ` +
        `${String(GRACE_MS / 1000)} s after its tests: ${left.join('; ')}`,
    );
  }
});
