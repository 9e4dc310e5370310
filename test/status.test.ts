/** `disref status` reports, built from a real snapshot of the embedded store. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { buildReport, renderReport } from '../src/cli/status-command.js';
import { connect } from '../src/index.js';
import type { MemoryBackend } from '../src/backends/memory/memory-backend.js';

it('shows held locks with fence and time left, references with live holders, and processes', async () => {
  const options = { url: 'memory://status', namespace: 'status' };
  const [a, b, observer] = await Promise.all([
    connect(options),
    connect(options),
    connect(options),
  ]);
  try {
    const lease = await a.lock('jobs:1', { ttl: 20_000 }).acquire();
    const waiting = b.lock('jobs:1').acquire();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const ra = await a.reference('record:1');
    await b.reference('record:1');
    await ra.incrementTimesModified(3);
    const backend = observer.backend;
    const report = buildReport(await backend.snapshot(), {
      address: backend.address,
      namespace: 'status',
      prefix: '',
      observer: observer.id,
    });
    assert.equal(report.locks.length, 1);
    const [lock] = report.locks;
    assert.equal(lock?.key, 'jobs:1');
    assert.equal(lock?.waiters, 1);
    assert.deepEqual(
      lock?.holders.map((holder) => [holder.process, holder.mode, holder.fence]),
      [[a.id, 'exclusive', lease.fence]],
    );
    assert.ok((lock?.holders[0]?.ttlLeft ?? 0) > 15_000);
    assert.deepEqual(report.references, [
      { resource: 'record:1', liveHolders: 2, timesModified: 3, completing: false },
    ]);
    assert.deepEqual(report.processes.map((process) => process.id).sort(), [a.id, b.id].sort());
    assert.ok(
      report.processes.every((process) => process.alive && process.pid === globalThis.process.pid),
    );
    const text = renderReport(report);
    assert.match(
      text,
      new RegExp(`jobs:1 +${a.id} +exclusive +${String(lease.fence)} +\\d+\\.\\d s +1`),
    );
    assert.match(text, /record:1 +2 +3 +held/);
    assert.deepEqual(
      JSON.parse(JSON.stringify(report)) as unknown,
      report,
      'the report is plain JSON',
    );
    const narrowed = await backend.snapshot('record:');
    assert.deepEqual(narrowed.locks, [], 'the store filters by prefix itself');
    assert.deepEqual(
      narrowed.references.map(({ resource }) => resource),
      ['record:1'],
    );
    const filtered = buildReport(narrowed, {
      address: backend.address,
      namespace: 'status',
      prefix: 'record:',
    });
    assert.deepEqual(filtered.locks, []);
    assert.equal(filtered.references.length, 1);
    await lease.release();
    await (await waiting).release();
    for (const disref of [a, b])
      for (const ref of disref.openReferences())
        await (await disref.reference(ref)).dereference(() => undefined);
  } finally {
    await Promise.all([a.close(), b.close(), observer.close()]);
  }
});

it('shows the data-loss quarantine while it holds grants back', async () => {
  const options = { url: 'memory://status-quarantine', namespace: 'status' };
  const [holder, observer] = await Promise.all([connect(options), connect(options)]);
  try {
    const report = async (): Promise<ReturnType<typeof buildReport>> =>
      buildReport(await observer.backend.snapshot(), {
        address: observer.backend.address,
        namespace: 'status',
        prefix: '',
      });
    assert.equal((await report()).quarantineLeft, null);
    assert.doesNotMatch(renderReport(await report()), /QUARANTINE/);
    await holder.lock('jobs:1', { ttl: 2_000 }).acquire();
    (observer.backend as MemoryBackend).store.loseAllData();
    const during = await report();
    assert.ok(
      during.quarantineLeft !== null &&
        during.quarantineLeft > 1_000 &&
        during.quarantineLeft <= 2_000,
      `quarantine left: ${String(during.quarantineLeft)} ms`,
    );
    assert.match(renderReport(during), /QUARANTINE: no lease is granted for \d\.\d s more/);
  } finally {
    await Promise.all([holder.close(), observer.close()]);
  }
});
