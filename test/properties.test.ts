/**
 * Property-based tests (fast-check) of the lock state machine every backend
 * implements: random sequences of acquire / release / extend / leave /
 * inspect, by several owners, in both modes, fair and unfair, checked step by
 * step against a small model. Leases and waiter registrations are long, so
 * time never decides an outcome here; expiry is covered by the conformance
 * suite.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Backend, LockMode } from '../src/index.js';
import { connect, type Disref } from '../src/index.js';
import { allTargets } from './harness/targets.js';

const OWNERS = ['a', 'b', 'c', 'd'] as const;
type Owner = (typeof OWNERS)[number];

/** The reference model: holders, a FIFO queue of fair waiters, the last fence. */
class Model {
  readonly holders = new Map<Owner, LockMode>();
  readonly queue: { owner: Owner; mode: LockMode }[] = [];
  lastFence = 0;

  /** `handOff`: the store grants queued waiters on release (Capabilities.handOff). */
  constructor(readonly handOff: boolean) {}

  /** Grants the head of the queue while it is compatible with the holders. */
  handOffToQueue(): void {
    if (!this.handOff) return;
    for (let head = this.queue[0]; head !== undefined; head = this.queue[0]) {
      for (const held of this.holders.values()) {
        if (head.mode === 'exclusive' || held === 'exclusive') return;
      }
      this.queue.shift();
      this.holders.set(head.owner, head.mode);
    }
  }

  grantable(owner: Owner, mode: LockMode, fair: boolean): boolean {
    for (const held of this.holders.values()) {
      if (mode === 'exclusive' || held === 'exclusive') return false;
    }
    if (fair) {
      for (const waiter of this.queue) {
        if (waiter.owner === owner) break;
        if (mode === 'exclusive' || waiter.mode === 'exclusive') return false;
      }
    }
    return true;
  }
}

type Command =
  | { verb: 'acquire'; owner: Owner; mode: LockMode; fair: boolean; wait: boolean }
  | { verb: 'release' | 'extend' | 'leave'; owner: Owner }
  | { verb: 'inspect' };

const owner = fc.constantFrom(...OWNERS);
function commands(fifo: boolean, shared: boolean): fc.Arbitrary<Command[]> {
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.record({
      verb: fc.constant('acquire' as const),
      owner,
      mode: shared
        ? fc.constantFrom<LockMode>('exclusive', 'shared')
        : fc.constant<LockMode>('exclusive'),
      fair: fifo ? fc.boolean() : fc.constant(false),
      // An unfair waiting exclusive request leaves a pending-writer mark the model does not track.
      wait: fifo ? fc.boolean() : fc.constant(false),
    }),
    fc.record({
      verb: fc.constantFrom('release' as const, 'extend' as const, 'leave' as const),
      owner,
    }),
    fc.constant({ verb: 'inspect' as const }),
  );
  return fc.array(command, { minLength: 1, maxLength: 25 });
}

/** Applies one command to the backend and the model, and checks they agree. */
async function step(backend: Backend, key: string, model: Model, command: Command): Promise<void> {
  switch (command.verb) {
    case 'acquire': {
      const { owner: who, mode } = command;
      const fair = command.fair;
      const wait = command.wait && fair; // unfair waiting is excluded above
      const expected = model.holders.has(who) || model.grantable(who, mode, fair);
      const result = await backend.acquire({
        key,
        owner: who,
        mode,
        ttl: 60_000,
        fair,
        wait,
        waiterTtl: 60_000,
      });
      assert.equal(result.granted, expected, `acquire ${who} ${mode} fair=${String(fair)}`);
      if (result.granted) {
        if (!model.holders.has(who)) {
          assert.ok(
            result.fence > model.lastFence,
            `fence ${String(result.fence)} after ${String(model.lastFence)}`,
          );
          model.lastFence = result.fence;
          model.holders.set(who, mode);
        }
        const queued = model.queue.findIndex((waiter) => waiter.owner === who);
        if (queued >= 0) model.queue.splice(queued, 1);
      } else if (wait && !model.queue.some((waiter) => waiter.owner === who)) {
        model.queue.push({ owner: who, mode });
      }
      return;
    }
    case 'release': {
      const released = await backend.release(key, command.owner);
      assert.equal(released, model.holders.has(command.owner), `release ${command.owner}`);
      model.holders.delete(command.owner);
      model.handOffToQueue();
      return;
    }
    case 'extend': {
      const extended = await backend.extend(key, command.owner, 60_000);
      assert.equal(extended, model.holders.has(command.owner), `extend ${command.owner}`);
      return;
    }
    case 'leave': {
      await backend.leave(key, command.owner);
      const queued = model.queue.findIndex((waiter) => waiter.owner === command.owner);
      if (queued >= 0) model.queue.splice(queued, 1);
      // leave() gives the whole acquisition up: with hand-offs, a waiter may already hold the lock.
      model.holders.delete(command.owner);
      model.handOffToQueue();
      return;
    }
    case 'inspect': {
      const state = await backend.inspect(key);
      const holders = new Map((state?.holders ?? []).map((holder) => [holder.owner, holder.mode]));
      assert.deepEqual(holders, model.holders, 'holders');
      assert.equal(state?.waiters ?? 0, model.queue.length, 'waiters');
      const exclusive = [...holders.values()].filter((mode) => mode === 'exclusive').length;
      assert.ok(exclusive === 0 || holders.size === 1, 'an exclusive holder shares the lock');
      return;
    }
  }
}

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

for (const target of allTargets()) {
  describe(`lock state machine: ${target.name}`, () => {
    if (target.unavailable !== undefined) {
      it('has its server', { skip: requireServers ? false : target.unavailable }, () => {
        assert.fail(target.unavailable);
      });
      return;
    }
    let disref: Disref;
    before(async () => {
      await target.setup();
      disref = await target.connect({ namespace: 'properties' });
    });
    after(async () => {
      await disref.close();
      await target.teardown();
    });

    it('agrees with the model on every step of random command sequences', async () => {
      const backend = disref.backend;
      const { fifo, sharedLocks } = backend.capabilities;
      let run = 0;
      await fc.assert(
        fc.asyncProperty(commands(fifo, sharedLocks), async (sequence) => {
          run += 1;
          const key = `prop-${String(run)}`;
          const model = new Model(backend.capabilities.handOff);
          for (const command of sequence) await step(backend, key, model, command);
          // Leave nothing behind for the next run.
          for (const who of OWNERS) {
            await backend.release(key, who);
            await backend.leave(key, who);
          }
        }),
        { numRuns: target.name === 'memory' ? 300 : 60 },
      );
    });
  });
}

it('example: a queued reader lets a later reader share once the writer is gone', async () => {
  const disref = await connect({ url: 'memory://properties-sanity' });
  const backend = disref.backend;
  const model = new Model(true);
  await step(backend, 'k', model, {
    verb: 'acquire',
    owner: 'a',
    mode: 'exclusive',
    fair: true,
    wait: true,
  });
  await step(backend, 'k', model, {
    verb: 'acquire',
    owner: 'b',
    mode: 'shared',
    fair: true,
    wait: true,
  });
  await step(backend, 'k', model, { verb: 'inspect' });
  assert.deepEqual(model.queue, [{ owner: 'b', mode: 'shared' }]);
  await step(backend, 'k', model, { verb: 'release', owner: 'a' });
  assert.deepEqual([...model.holders], [['b', 'shared']], 'the release handed the lock to b');
  await step(backend, 'k', model, {
    verb: 'acquire',
    owner: 'c',
    mode: 'shared',
    fair: true,
    wait: false,
  });
  await step(backend, 'k', model, { verb: 'inspect' });
  await disref.close();
});
