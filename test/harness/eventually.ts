/** Polling for a condition that becomes true some time later (a recovery, a reconnect). */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** Waits until `condition` holds, polling every 20 ms; fails naming `what` after `ms`. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await condition()) return;
    await sleep(20);
  }
  assert.fail(`not within ${String(ms)} ms: ${what}`);
}
