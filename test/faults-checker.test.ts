/**
 * The fault runs' checker must see each kind of failure it reports: fed
 * small made-up histories with one defect each, it counts exactly that one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { check, type WorkerEvent } from './faults/checker.js';

type Step = [worker: number, at: number, event: Record<string, unknown>];

/** One clean section: ask, get `fence`, read `value`, write `value + 1`, release. */
function section(worker: number, from: number, fence: number, value: number): Step[] {
  return [
    [worker, from, { type: 'acquiring' }],
    [worker, from + 1, { type: 'acquired', fence }],
    [worker, from + 2, { type: 'read', fence, value, long: false }],
    [worker, from + 3, { type: 'wrote', fence, value: value + 1 }],
    [worker, from + 4, { type: 'releasing', fence, validAtEnd: true }],
    [worker, from + 5, { type: 'released', fence, freed: true }],
  ];
}

function history(...steps: Step[][]): WorkerEvent[] {
  return steps
    .flat()
    .map(([worker, at, event]) => ({ worker, at, ...event }) as WorkerEvent)
    .sort((a, b) => a.at - b.at);
}

describe('fault checker', () => {
  it('finds nothing wrong in a clean history', () => {
    const report = check(history(section(0, 0, 10, 0), section(1, 10, 11, 1)), 2);
    assert.deepEqual(
      [
        report.lostUpdates,
        report.staleWritesAccepted,
        report.overlaps,
        report.overlapsWhileValid,
        report.fenceRegressions,
        report.staleReleasesThatFreed,
      ],
      [0, 0, 0, 0, 0, 0],
    );
    assert.equal(report.acceptedWrites, 2);
  });

  it('counts a lost update', () => {
    // Worker 0 read 0, then worker 1 read 0 too (overlapping), both wrote 1.
    const report = check(history(section(0, 0, 10, 0), section(1, 2, 11, 0)), 1);
    assert.equal(report.lostUpdates, 1);
    assert.equal(report.staleWritesAccepted, 0, 'fences still grew along the record');
    assert.equal(report.overlaps, 1);
    assert.equal(report.overlapsWhileValid, 1, 'both leases were valid: exclusion broken');
  });

  it('counts a fence that did not grow for a later request', () => {
    const report = check(history(section(0, 0, 10, 0), section(1, 10, 9, 1)), 2);
    assert.equal(report.fenceRegressions, 1);
    assert.equal(report.staleWritesAccepted, 1, 'the lower fence wrote after the higher one');
  });

  it('counts a release that freed a lock granted to a higher fence', () => {
    const paused: Step[] = [
      [0, 0, { type: 'acquiring' }],
      [0, 1, { type: 'acquired', fence: 10 }],
      [0, 2, { type: 'read', fence: 10, value: 0, long: false }],
      [0, 30, { type: 'write-refused', fence: 10, value: 1 }],
      [0, 31, { type: 'releasing', fence: 10, validAtEnd: false }],
      [0, 32, { type: 'released', fence: 10, freed: true }],
    ];
    const report = check(history(paused, section(1, 20, 11, 0)), 1);
    assert.equal(report.staleReleasesThatFreed, 1);
    assert.equal(report.overlaps, 1);
    assert.equal(report.overlapsWhileValid, 0, 'the paused lease had run out');
    assert.equal(report.refusedWrites, 1);
    assert.equal(report.lostUpdates, 0);
  });

  it('measures how long the lock stayed unavailable after a kill', () => {
    const killed: Step[] = [
      [0, 0, { type: 'acquiring' }],
      [0, 1, { type: 'acquired', fence: 10 }],
    ];
    const report = check(history(killed, section(1, 1_050, 11, 0)), 1, new Map([[0, 50]]));
    assert.equal(report.maxUnavailabilityAfterKill, 1_001);
  });
});
