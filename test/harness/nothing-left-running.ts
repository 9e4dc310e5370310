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

/**
 * Where each timer made by the global `setTimeout` / `setInterval` was made,
 * until it fires (once) or is cleared, so that a timer left behind is named
 * by its creator. (`node:timers/promises` timers are not seen: they show as
 * "a timer".)
 */
const timerOrigins = new Map<NodeJS.Timeout, string>();

function origin(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 6;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  // The frames below this file: where the timer was asked for.
  const frames = stack
    .split('\n')
    .slice(1)
    .map((line) => line.trim());
  return frames
    .filter((frame) => !frame.includes('nothing-left-running'))
    .slice(0, 3)
    .map((frame) => frame.replace(/^at /, '').replace(`${process.cwd()}/`, ''))
    .join(' <- ');
}

function track(kind: 'setTimeout' | 'setInterval'): void {
  const real = globalThis[kind];
  const tracked = (callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const timer = real(
      (...given: unknown[]) => {
        if (kind === 'setTimeout') timerOrigins.delete(timer);
        callback(...given);
      },
      ms,
      ...args,
    );
    timerOrigins.set(timer, origin());
    return timer;
  };
  // Keep what else the real function carries (util.promisify.custom).
  Object.assign(tracked, real);
  (globalThis as Record<string, unknown>)[kind] = tracked;
}
track('setTimeout');
track('setInterval');
for (const kind of ['clearTimeout', 'clearInterval'] as const) {
  const real = globalThis[kind];
  (globalThis as Record<string, unknown>)[kind] = (timer?: NodeJS.Timeout | string | number) => {
    if (typeof timer === 'object') timerOrigins.delete(timer);
    real(timer);
  };
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
  const known = [...timerOrigins]
    .filter(([timer]) => timer.hasRef())
    .map(([, where]) => `a timer made at ${where}`);
  const unknown = Math.max(0, timers.length - known.length);
  return [
    ...handles,
    ...known.slice(0, timers.length),
    ...Array.from({ length: unknown }, () => 'a timer'),
  ];
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
