/**
 * Property-based tests (fast-check) of the reference state machine: random
 * sequences of reference / dereference / count / incrementTimesModified /
 * timesModified by several `Disref` instances (standing for processes) on a
 * few resources, with at most one process dying per run (it stops
 * heartbeating with references open) followed by recovery, checked step by
 * step against a small model. At the end every process lets go of what it
 * holds, and every lifetime of every resource must have completed exactly
 * once, with the timesModified of that lifetime.
 *
 * Process 0 beats slowly and never dies; processes 1 and 2 beat fast so that
 * their death is noticed within a run. A process that dies is replaced by a
 * new one (a restart: a new identity).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import {
  InvalidArgumentError,
  type CompletionInfo,
  type ConnectOptions,
  type Disref,
  type Reference,
} from '../src/index.js';
import { memcachedTarget } from './harness/memcached-target.js';
import { ioredisTarget, memoryTarget, type BackendTarget } from './harness/targets.js';

const PROCESSES = [0, 1, 2] as const;
type Slot = (typeof PROCESSES)[number];
const RESOURCES = ['part:a', 'part:b'] as const;
type Resource = (typeof RESOURCES)[number];

/** Process 0: far from any timing edge, so it is never declared dead by a stall. */
const STEADY: Partial<ConnectOptions> = { heartbeatInterval: 10_000, processTtl: 60_000 };
/** Processes 1 and 2: dead ~300 ms after they stop beating (ten beats of margin while alive). */
const MORTAL: Partial<ConnectOptions> = { heartbeatInterval: 30, processTtl: 300 };
/** Longest wait for a death to be noticed and recovered (memcached adds 1 s of clock tolerance). */
const RECOVERY_WAIT = 8_000;

type Command =
  | { verb: 'reference'; process: Slot; resource: Resource }
  | { verb: 'dereference'; process: Slot; resource: Resource; callback: boolean }
  | { verb: 'count' | 'timesModified'; resource: Resource }
  | { verb: 'increment'; process: Slot; resource: Resource; by: number }
  | { verb: 'die'; process: 1 | 2 };

/** The model: live holders and timesModified per resource, and the completions owed. */
class Model {
  readonly holders = new Map<Resource, Set<Slot>>(RESOURCES.map((r) => [r, new Set()]));
  readonly times = new Map<Resource, number>(RESOURCES.map((r) => [r, 0]));
  /** Per resource, the timesModified each ended lifetime must complete with, in order. */
  readonly completions = new Map<Resource, number[]>(RESOURCES.map((r) => [r, []]));
  /** Per resource, lifetimes started (a first holder arrived). */
  readonly lifetimes = new Map<Resource, number>(RESOURCES.map((r) => [r, 0]));

  holdersOf(resource: Resource): Set<Slot> {
    return this.holders.get(resource) ?? new Set();
  }

  reference(process: Slot, resource: Resource): void {
    const holders = this.holdersOf(resource);
    if (holders.size === 0) this.lifetimes.set(resource, (this.lifetimes.get(resource) ?? 0) + 1);
    holders.add(process);
  }

  /** Removes a holder; resolves whether it was the last (and then records the completion). */
  remove(process: Slot, resource: Resource): boolean {
    const holders = this.holdersOf(resource);
    if (!holders.delete(process) || holders.size > 0) return false;
    this.completions.get(resource)?.push(this.times.get(resource) ?? 0);
    this.times.set(resource, 0);
    return true;
  }
}

const slot = fc.constantFrom<Slot>(...PROCESSES);
const resource = fc.constantFrom<Resource>(...RESOURCES);
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ verb: fc.constant('reference' as const), process: slot, resource }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      verb: fc.constant('dereference' as const),
      process: slot,
      resource,
      callback: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      verb: fc.constantFrom('count' as const, 'timesModified' as const),
      resource,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      verb: fc.constant('increment' as const),
      process: slot,
      resource,
      by: fc.integer({ min: 1, max: 5 }),
    }),
  },
);
/**
 * A command sequence with at most one death, inserted at a random point. The
 * dying process first takes references to some resources, so that deaths
 * leave orphans (as last holder or not) more often than chance would.
 */
const sequences: fc.Arbitrary<Command[]> = fc
  .tuple(
    fc.array(command, { minLength: 5, maxLength: 40 }),
    fc.option(
      fc.record({
        at: fc.nat(),
        process: fc.constantFrom<1 | 2>(1, 2),
        holding: fc.subarray([...RESOURCES]),
      }),
      { freq: 2 },
    ),
  )
  .map(([commands, death]) => {
    if (death === null) return commands;
    const at = death.at % (commands.length + 1);
    const { process } = death;
    return [
      ...commands.slice(0, at),
      ...death.holding.map((r) => ({ verb: 'reference' as const, process, resource: r })),
      { verb: 'die' as const, process },
      ...commands.slice(at),
    ];
  });

/** One completion that really ran. */
interface Ran {
  readonly timesModified: number;
  readonly attempt: number;
}

/** The real side of a run: the processes, their references, and the completions that ran. */
class World {
  readonly disrefs: Disref[] = [];
  /** The identity each process had when it connected (a change means it was declared dead). */
  readonly ids: string[] = [];
  /** The last Reference each process took per resource. */
  readonly refs = new Map<string, Reference>();
  readonly ran = new Map<Resource, Ran[]>(RESOURCES.map((r) => [r, []]));

  constructor(
    readonly target: BackendTarget,
    readonly namespace: string,
  ) {}

  readonly record = (name: string, { attempt, timesModified }: CompletionInfo): void => {
    this.ran.get(name as Resource)?.push({ attempt, timesModified });
  };

  async start(p: Slot): Promise<void> {
    const disref = await this.target.connect({
      ...(p === 0 ? STEADY : MORTAL),
      namespace: this.namespace,
    });
    disref.onComplete('part', this.record);
    this.disrefs[p] = disref;
    this.ids[p] = disref.id;
    for (const r of RESOURCES) this.refs.delete(`${String(p)}|${r}`);
  }

  get(process: Slot): Disref {
    const disref = this.disrefs[process];
    assert.ok(disref !== undefined);
    return disref;
  }

  ref(process: Slot, r: Resource): Reference | undefined {
    return this.refs.get(`${String(process)}|${r}`);
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.disrefs.map((disref) => disref.close()));
  }
}

/** Applies one command to the processes and the model, and checks they agree. */
async function step(world: World, model: Model, command: Command): Promise<void> {
  switch (command.verb) {
    case 'reference': {
      const { process, resource: r } = command;
      const ref = await world.get(process).reference(r);
      const again = world.ref(process, r);
      if (model.holdersOf(r).has(process)) assert.equal(ref, again, 'a second reference()');
      world.refs.set(`${String(process)}|${r}`, ref);
      assert.equal(ref.held, true);
      model.reference(process, r);
      return;
    }
    case 'dereference': {
      const { process, resource: r } = command;
      const ref = world.ref(process, r);
      if (ref === undefined) return; // never referenced here: nothing to call it on
      const before = world.ran.get(r)?.length ?? 0;
      const last = await (command.callback
        ? ref.dereference((name, info) => {
            world.record(name, info);
          })
        : ref.dereference());
      assert.equal(last, model.remove(process, r), `dereference ${String(process)} ${r}`);
      assert.equal(ref.held, false);
      const ran = (world.ran.get(r)?.length ?? 0) - before;
      assert.equal(ran, last ? 1 : 0, 'the last dereference ran the completion before resolving');
      return;
    }
    case 'count': {
      assert.equal(
        await world.get(0).backend.countReferences(command.resource),
        model.holdersOf(command.resource).size,
        `count ${command.resource}`,
      );
      // The public API agrees, through any reference of a live process.
      for (const p of PROCESSES) {
        const ref = world.ref(p, command.resource);
        if (ref !== undefined) {
          assert.equal(await ref.count(), model.holdersOf(command.resource).size);
          break;
        }
      }
      return;
    }
    case 'timesModified': {
      const expected = model.times.get(command.resource) ?? 0;
      assert.equal(await world.get(0).backend.timesModified(command.resource), expected);
      for (const p of PROCESSES) {
        const ref = world.ref(p, command.resource);
        if (ref !== undefined) {
          assert.equal(await ref.timesModified(), expected, `timesModified ${command.resource}`);
          break;
        }
      }
      return;
    }
    case 'increment': {
      const { process, resource: r, by } = command;
      const ref = world.ref(process, r);
      if (ref === undefined) return;
      if (!model.holdersOf(r).has(process)) {
        await assert.rejects(ref.incrementTimesModified(by), InvalidArgumentError);
        return;
      }
      const expected = (model.times.get(r) ?? 0) + by;
      assert.equal(
        await ref.incrementTimesModified(by),
        expected,
        `increment ${r} by ${String(by)}`,
      );
      model.times.set(r, expected);
      return;
    }
    case 'die': {
      const { process } = command;
      const held = RESOURCES.filter((r) => model.holdersOf(r).has(process));
      // close() with references open stops the heartbeat and keeps the registration: a crash.
      await world.get(process).close();
      for (const r of held) model.remove(process, r);
      // Wait until the store counts it dead, then recover until the orphans are completed.
      const survivor = world.get(0);
      const deadline = Date.now() + RECOVERY_WAIT;
      const settled = async (): Promise<boolean> => {
        for (const r of held) {
          if ((await survivor.backend.countReferences(r)) !== model.holdersOf(r).size) return false;
        }
        await survivor.recover();
        return RESOURCES.every(
          (r) => world.ran.get(r)?.length === model.completions.get(r)?.length,
        );
      };
      while (!(await settled())) {
        assert.ok(Date.now() < deadline, `the death of process ${String(process)} was recovered`);
        await sleep(25);
      }
      await world.start(process); // a restart: a new process takes the slot
      return;
    }
  }
}

/** Counts and counters in the store agree with the model (read by the steady process). */
async function checkStore(world: World, model: Model): Promise<void> {
  const backend = world.get(0).backend;
  for (const r of RESOURCES) {
    assert.equal(await backend.countReferences(r), model.holdersOf(r).size, `count ${r}`);
    assert.equal(await backend.timesModified(r), model.times.get(r), `timesModified ${r}`);
  }
}

/** What ran agrees with what the model owes so far. */
function checkCompletions(world: World, model: Model): void {
  for (const r of RESOURCES) {
    const ran = world.ran.get(r) ?? [];
    assert.deepEqual(
      ran.map((run) => run.timesModified),
      model.completions.get(r),
      `completions of ${r} (their timesModified)`,
    );
    assert.ok(
      ran.every((run) => run.attempt === 1),
      `${r}: nothing failed, so no completion was retried`,
    );
  }
  for (const p of PROCESSES) {
    assert.equal(
      world.get(p).id,
      world.ids[p],
      `process ${String(p)} kept its identity (a change means a stall on this machine outlasted its processTtl)`,
    );
  }
}

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const targets: { target: BackendTarget; numRuns: number }[] = [
  { target: memoryTarget, numRuns: 50 },
  { target: ioredisTarget(), numRuns: 40 },
  { target: memcachedTarget(1), numRuns: 25 },
];

for (const { target, numRuns } of targets) {
  describe(`reference state machine: ${target.name}`, () => {
    if (target.unavailable !== undefined) {
      if (!requireServers)
        console.warn(`\n*** SKIPPING ${target.name}: ${target.unavailable} ***\n`);
      it('has its server', { skip: requireServers ? false : target.unavailable }, () => {
        assert.fail(target.unavailable);
      });
      return;
    }
    before(() => target.setup());
    after(() => target.teardown());

    it('agrees with the model on every step, and completes every lifetime exactly once', async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(sequences, async (sequence) => {
          run += 1;
          const world = new World(target, `refprop${String(process.pid)}-${String(run)}`);
          const model = new Model();
          try {
            for (const p of PROCESSES) await world.start(p);
            for (const command of sequence) {
              await step(world, model, command);
              checkCompletions(world, model);
              await checkStore(world, model);
            }
            // Everyone lets go: every lifetime ends, each completed exactly once.
            for (const r of RESOURCES) {
              for (const p of PROCESSES) {
                if (model.holdersOf(r).has(p)) {
                  await step(world, model, {
                    verb: 'dereference',
                    process: p,
                    resource: r,
                    callback: false,
                  });
                }
              }
              assert.equal(model.completions.get(r)?.length, model.lifetimes.get(r), r);
            }
            await world.get(0).recover();
            checkCompletions(world, model);
            for (const r of RESOURCES) {
              assert.equal(await world.get(0).backend.countReferences(r), 0);
              assert.equal(await world.get(0).backend.timesModified(r), 0);
            }
          } finally {
            await world.closeAll();
          }
        }),
        { numRuns, includeErrorInReport: true },
      );
    });
  });
}
