/**
 * Nothing leaks: after close(), every timer disref started (heartbeat, lease
 * expiry, extension, wait) is cleared, even the unref'd ones that
 * process.getActiveResourcesInfo() does not list.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, LockTimeoutError } from '../src/index.js';
import { aliveAfter } from './harness/alive-after.js';

it('leaves no timers or handles behind after close()', async () => {
  const alive = await aliveAfter(async () => {
    const a = await connect({ url: 'memory://leaks', namespace: 'leaks', heartbeatInterval: 20 });
    const b = await connect({ url: 'memory://leaks', namespace: 'leaks' }); // next beat 10 s away
    await a.lock('k', { ttl: 90 }).using(() => sleep(100)); // extended at least twice
    const held = await a.lock('k').acquire();
    await assert.rejects(b.lock('k').acquire({ timeout: 30 }), LockTimeoutError);
    const waiting = b
      .lock('k')
      .acquire()
      .catch((error: unknown) => error); // still waiting at close
    await b.rlock('r').using(() => b.rlock('r').using(() => sleep(5)));
    await b
      .rwlock('rw')
      .read()
      .using(() => sleep(5));
    await a.conflictLock('z', { isConflict: () => true, retries: 1 }).run(({ attempt }) => attempt);
    await sleep(50); // a few heartbeats
    void held;
    await Promise.all([a.close(), b.close()]);
    assert.match(String(await waiting), /closed/);
  });
  assert.deepEqual(alive, [], 'resources still alive after close()');
});

it('leaves no expiry timer behind when a lease is released while an extension is in flight', async () => {
  const alive = await aliveAfter(async () => {
    const disref = await connect({ url: 'memory://leaks', namespace: 'leaks-extend' });
    const lease = await disref.lock('k', { ttl: 60_000 }).acquire();
    const extending = lease.extend();
    await lease.release();
    await extending;
    assert.equal(lease.signal.aborted, false, 'a released lease is not reported lost');
    await disref.close();
  });
  assert.deepEqual(alive, []);
});
