/** Lock and completion events on node:diagnostics_channel. */
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { channels, connect } from '../src/index.js';

it('publishes acquired, extended, released, lost and completion events', async () => {
  const seen: { channel: string; message: Record<string, unknown> }[] = [];
  const names = Object.values(channels).map((channel) => channel.name as string);
  const listeners = names.map((name) => {
    const listener = (message: unknown): void => {
      seen.push({ channel: name, message: message as Record<string, unknown> });
    };
    diagnostics.subscribe(name, listener);
    return { name, listener };
  });
  const disref = await connect({ url: 'memory://events', namespace: 'events' });
  try {
    const lease = await disref.lock('k').acquire();
    await lease.extend(5_000);
    await lease.release();
    const short = await disref.lock('k', { ttl: 50 }).acquire();
    await sleep(100);
    assert.equal(short.signal.aborted, true);
    disref.onComplete('job', () => undefined);
    const ref = await disref.reference('job:1');
    await ref.dereference();
    await assert.rejects(
      (await disref.reference('job:2')).dereference(() => {
        throw new Error('boom');
      }),
      /boom/,
    );
  } finally {
    for (const { name, listener } of listeners) diagnostics.unsubscribe(name, listener);
    await disref.close();
  }
  const of = (channel: string) => seen.filter((event) => event.channel === channel);
  assert.equal(of('disref:lock:acquired').length, 2);
  assert.equal(of('disref:lock:acquired')[0]?.message.key, 'k');
  assert.equal(typeof of('disref:lock:acquired')[0]?.message.waitedMs, 'number');
  assert.equal(of('disref:lock:extended')[0]?.message.ttl, 5_000);
  assert.equal(of('disref:lock:released')[0]?.message.wasHeld, true);
  assert.match(String(of('disref:lock:lost')[0]?.message.reason), /ran out/);
  assert.deepEqual(
    of('disref:completion:started').map((event) => event.message.resource),
    ['job:1', 'job:2'],
  );
  assert.equal(of('disref:completion:finished')[0]?.message.resource, 'job:1');
  assert.equal(of('disref:completion:failed')[0]?.message.resource, 'job:2');
  assert.match(String(of('disref:completion:failed')[0]?.message.error), /boom/);
});
