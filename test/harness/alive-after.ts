/**
 * Which timers and sockets created while a function ran are still alive
 * after it: an async_hooks census (it also sees unref'd timers, which
 * process.getActiveResourcesInfo() does not list). LEAK_STACKS=1 records
 * where each was created.
 */
import { createHook } from 'node:async_hooks';

export async function aliveAfter(run: () => Promise<void>): Promise<string[]> {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type === 'Timeout' || type === 'TCPWRAP' || type === 'PIPEWRAP') {
        live.set(
          id,
          (process.env.LEAK_STACKS ?? '') === '' ? type : (new Error(type).stack ?? type),
        );
      }
    },
    destroy(id) {
      live.delete(id);
    },
  });
  hook.enable();
  try {
    await run();
    // Let sockets finish closing and destroy hooks of cleared timers run: on a busy machine
    // that takes a while. A real leak stays, however long this waits.
    // (Polled with setImmediate: a timer of ours would be counted.)
    const until = Date.now() + 1_000;
    do await new Promise(setImmediate);
    while (live.size > 0 && Date.now() < until);
  } finally {
    hook.disable();
  }
  return [...live.values()];
}
