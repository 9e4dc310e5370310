/**
 * Runs the conformance suites against every backend target. A target whose
 * server binary is missing is skipped loudly; with DISREF_REQUIRE_SERVERS=1
 * (as in CI) that is a failure.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../src/index.js';
import { lockConformance } from './conformance/locks.js';
import { referenceConformance } from './conformance/references.js';
import { allTargets } from './harness/targets.js';

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

for (const target of allTargets()) {
  if (target.unavailable !== undefined) {
    if (requireServers) {
      it(`conformance: ${target.name} has its server`, () => {
        assert.fail(`${target.name}: ${target.unavailable ?? ''} (DISREF_REQUIRE_SERVERS=1)`);
      });
    } else {
      console.warn(`\n*** SKIPPING ${target.name}: ${target.unavailable} ***\n`);
      it(`conformance: ${target.name}`, { skip: target.unavailable }, () => undefined);
    }
    continue;
  }
  describe(`conformance: ${target.name}`, () => {
    before(() => target.setup());
    after(() => target.teardown());
    describe('locks', () => {
      lockConformance(target);
    });
    if (target.references === true) {
      describe('references', () => {
        referenceConformance(target);
      });
    } else {
      // A backend without reference counting must refuse it clearly, never half-work.
      it('refuses references with an error naming the backend and the feature', async () => {
        const disref = await target.connect({ namespace: 'no-references' });
        try {
          await assert.rejects(disref.reference('record:1'), (error: unknown) => {
            assert.ok(error instanceof InvalidArgumentError, String(error));
            assert.match(error.message, new RegExp(disref.backend.name));
            assert.match(error.message, /reference/i);
            return true;
          });
        } finally {
          await disref.close();
        }
      });
    }
  });
}
