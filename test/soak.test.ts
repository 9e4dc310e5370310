/**
 * The short soak: the driver of `npm run soak` (bench/soak-run.ts) for a few
 * seconds per backend, with worker processes against a real redis-server and
 * memcached, and the in-process store. Nothing fails but lock timeouts, every
 * last dereference runs its completion once, and memory, handles and
 * connections stay flat, with nothing left open after close(). The long run
 * and its figures are in docs/reliability.md.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { runSoak, soakUnavailable, type SoakBackend, type SoakReport } from '../bench/soak-run.js';

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const SECONDS: Record<SoakBackend, number> = { memory: 6, redis: 14, memcached: 14 };
/** Keys disref removes once nothing is held (lock fences and the marker stay on purpose). */
const TRANSIENT = ['lock', 'queue', 'ref', 'process', 'held', 'pending'];

for (const backend of ['memory', 'redis', 'memcached'] as const) {
  const unavailable = soakUnavailable(backend);
  if (unavailable !== undefined && !requireServers) {
    console.warn(`\n*** SKIPPING the ${backend} soak: ${unavailable} ***\n`);
  }

  describe(`soak on ${backend} (short)`, { skip: !requireServers && unavailable }, () => {
    let report: SoakReport;

    before(
      async () => {
        report = await runSoak({
          backend,
          seconds: SECONDS[backend],
          workers: 3,
          concurrency: 16,
          keys: 300,
          sampleMs: 1_000,
          // Generous: a short run on a busy machine; the long run holds 10%.
          heapGrowth: 0.5,
          heapSlackBytes: 4 * 1024 * 1024,
        });
      },
      { timeout: 60_000 },
    );

    it('fails only with lock timeouts, and runs every completion once', () => {
      const results = report.workers.map(({ result }) => result);
      assert.ok(report.summary.operations > 0, 'no operation ran');
      for (const result of results) {
        assert.equal(result.errorCount, 0, JSON.stringify(result.errors));
        assert.equal(result.exclusionViolations, 0);
      }
      const references = report.summary.references;
      assert.ok(references.cycles > 0);
      assert.equal(references.callbackMismatches, 0);
      assert.equal(references.callbacks, references.last);
      assert.equal(references.retriedCompletions, 0);
      // No lifetime completed twice: completions never saw more modifications than were made.
      assert.ok(references.completedTimesModified <= references.increments);
    });

    it('reports no background errors', () => {
      for (const { result } of report.workers) {
        assert.equal(result.backgroundErrors, 0, JSON.stringify(result.errors));
      }
    });

    it('keeps heap, timers, sockets and server connections flat, and leaves nothing open', () => {
      const { checks, problems } = report.summary;
      assert.ok(checks.heap, problems.join('\n'));
      assert.ok(checks.handles, problems.join('\n'));
      assert.ok(checks.close, problems.join('\n'));
      for (const { result } of report.workers) assert.deepEqual(result.aliveAfterClose, []);
      if (report.server !== null) {
        assert.equal(report.server.connectionsAfter, report.server.connectionsBefore);
      }
    });

    // The in-process store has no server to look into.
    if (backend !== 'memory') {
      it('leaves no lock, reference or process keys in the store', () => {
        const left = Object.entries(report.server?.left ?? {}).filter(([kind]) =>
          TRANSIENT.includes(kind),
        );
        assert.deepEqual(left, []);
      });
    }
  });
}
