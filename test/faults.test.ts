/**
 * The fault runs (test/faults/): worker processes loop acquire -> read the
 * shared record (a fenced Redis key or memcached item on a server of its
 * own) -> write it + 1 -> release, while the harness pauses and
 * kills holders, freezes and empties the store, and cuts one worker off
 * from the store; then the checker reads the whole history. On Redis and
 * on memcached. The short schedule runs in CI; FAULT_ROUNDS=N repeats the
 * schedule N times (the longer run in docs/reliability.md).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh as markMemcachedFresh } from '../src/backends/memcached/epoch-guard.js';
import { BlackholeProxy } from './faults/blackhole-proxy.js';
import { check, type Report } from './faults/checker.js';
import { LockRun } from './faults/lock-run.js';
import { finalValue } from './faults/record.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';
import { readLog, ReferenceWorker } from './harness/reference-workers.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh as markRedisFresh } from './harness/targets.js';

const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const rounds = Number(process.env.FAULT_ROUNDS ?? '1');
const TTL = 1_000;
const MAX_TTL = 2_000;
const RETRY_INTERVAL = 50;
const FAULT_LENGTH = 2.5 * TTL;
/** Worker 0 reaches the store through the black-hole proxy. */
const CUT_OFF = 0;

/** A store server the harness can freeze and empty. */
interface FaultyStore {
  readonly port: number;
  pause(): void;
  resume(): void;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

interface Backend {
  readonly name: string;
  readonly unavailable: string | undefined;
  /**
   * How long past its ttl an abandoned lease may still block others: 0 on
   * Redis (the server's clock expires it); 1 s on memcached, whose holders
   * write expiry with their own clock and others allow 1 s of clock
   * difference (README, memcached).
   */
  readonly clockTolerance: number;
  start(): Promise<FaultyStore>;
  url(port: number): string;
  /** Skips the first-use quarantine of `namespace` on a server that just started. */
  markFresh(port: number, namespace: string): Promise<void>;
}

const backends: Backend[] = [
  {
    name: 'redis',
    unavailable: redisUnavailable(),
    clockTolerance: 0,
    start: () => RedisServer.start(),
    url: (port) => `redis://127.0.0.1:${String(port)}`,
    markFresh: async (port, namespace) => {
      const admin = new Redis(port, '127.0.0.1');
      await markRedisFresh(admin, namespace);
      admin.disconnect();
    },
  },
  {
    name: 'memcached',
    unavailable: memcachedUnavailable(),
    clockTolerance: 1_000,
    start: () => MemcachedServer.start(),
    url: (port) => `memcached://127.0.0.1:${String(port)}`,
    markFresh: async (port, namespace) => {
      const admin = new MemcachedClient({ servers: [{ host: '127.0.0.1', port }] });
      await markMemcachedFresh(admin, namespace);
      admin.close();
    },
  },
];

/** Prints the report so the figures of a run can be quoted (docs/reliability.md). */
function record(t: TestContext, label: string, report: Report): void {
  t.diagnostic(`${label}: ${JSON.stringify(report)}`);
}

for (const backend of backends) {
  const skip = !requireServers && backend.unavailable;
  if (skip !== false && skip !== undefined) {
    console.warn(`\n*** SKIPPING the ${backend.name} fault runs: ${String(skip)} ***\n`);
  }

  describe(`fault runs on ${backend.name}`, { skip }, () => {
    let store: FaultyStore;
    let resourceServer: FaultyStore;
    let proxy: BlackholeProxy;
    let runs = 0;

    before(async () => {
      if (backend.unavailable !== undefined) assert.fail(backend.unavailable);
      store = await backend.start();
      resourceServer = await backend.start();
      proxy = await BlackholeProxy.start(store.port);
    });
    after(async () => {
      await proxy.close();
      await resourceServer.stop();
      await store.stop();
    });

    const startRun = (fenced: boolean): Promise<LockRun> => {
      runs += 1;
      return LockRun.start({
        storeUrl: (worker) => backend.url(worker === CUT_OFF ? proxy.port : store.port),
        resourceUrl: backend.url(resourceServer.port),
        namespace: `faults-${String(runs)}`,
        recordKey: `record-${String(runs)}`,
        fenced,
        workers: 4,
        ttl: TTL,
        maxTtl: MAX_TTL,
        retryInterval: RETRY_INTERVAL,
        holdMs: 5,
      });
    };
    it('with fencing: no stale write accepted, no update lost, through every fault', async (t) => {
      const run = await startRun(true);
      const pausedHolders: number[] = [];
      const unavailability: number[] = [];
      let spare = 4;
      try {
        await run.progress(5); // past the first-use quarantine
        for (let round = 0; round < rounds; round++) {
          // 1. A holder pauses past its lease (a GC pause, a frozen VM): its late write must be refused.
          const paused = await run.holderInLongSection((worker) => worker !== CUT_OFF);
          const lateWrite = run.waitFor(
            (event) =>
              event.worker === paused && (event.type === 'wrote' || event.type === 'write-refused'),
            FAULT_LENGTH + 10_000,
          );
          await run.pause(paused, FAULT_LENGTH);
          assert.equal((await lateWrite).type, 'write-refused', 'the paused holder wrote late');
          pausedHolders.push(paused);

          // 2. A holder is killed: the lock must be free again within a lease and a retry.
          await run.progress(3);
          const victim = await run.holder((worker) => worker !== CUT_OFF);
          await run.kill(victim);
          const next = await run.waitFor(
            (event) => event.type === 'acquired' && event.worker !== victim,
          );
          unavailability.push(next.at - (run.kills.get(victim) ?? 0));
          await run.spawn(spare++);

          // 3. The store freezes for longer than a lease.
          await run.progress(3);
          store.pause();
          await sleep(FAULT_LENGTH);
          store.resume();

          // 4. The store restarts empty: fences must keep growing, and no lease overlap the old ones.
          await run.progress(3);
          await store.restart();

          // 5. The link between one worker and the store goes silent while that worker holds.
          await run.progress(3);
          run.holdLongNext(CUT_OFF);
          await run.waitFor(
            (event) => event.type === 'read' && event.worker === CUT_OFF && event.long,
            30_000,
          );
          proxy.blackhole();
          await sleep(FAULT_LENGTH);
          proxy.heal();
          await run.progress(5);
        }
      } finally {
        proxy.heal();
        store.resume();
        await run.stop();
      }
      const report = check(
        run.events,
        await finalValue(backend.url(resourceServer.port), `record-${String(runs)}`),
        run.kills,
      );
      record(t, `${backend.name}, fenced, ${String(rounds)} round(s)`, report);
      t.diagnostic(
        `unavailability after each kill (ms): ${unavailability.map(Math.round).join(', ')}`,
      );

      assert.equal(report.staleWritesAccepted, 0, 'stale writes accepted');
      assert.equal(report.lostUpdates, 0, 'lost updates');
      assert.equal(report.fenceRegressions, 0, 'fence regressions');
      assert.equal(report.overlapsWhileValid, 0, 'two valid leases at once');
      assert.equal(report.staleReleasesThatFreed, 0, 'stale releases that freed a lock');
      assert.ok(report.refusedWrites >= rounds, 'the paused holders were stopped by the fence');
      assert.ok(
        report.maxUnavailabilityAfterKill <= TTL + backend.clockTolerance + RETRY_INTERVAL + 250,
        `lock free again ${String(Math.round(report.maxUnavailabilityAfterKill))} ms after a kill`,
      );
      // The cut-off holder lost its lease: its late write went nowhere either.
      const cutOffLong = run.events.find(
        (event) => event.worker === CUT_OFF && event.type === 'read' && event.long,
      );
      assert.ok(cutOffLong !== undefined && 'fence' in cutOffLong);
      const cutOffWrite = run.events.find(
        (event) =>
          event.worker === CUT_OFF &&
          (event.type === 'wrote' || event.type === 'write-refused') &&
          event.fence === cutOffLong.fence,
      );
      assert.equal(cutOffWrite?.type, 'write-refused', 'the cut-off holder wrote late');
    });

    it('without fencing, the checker sees the overlap and the lost update a paused holder causes', async (t) => {
      const run = await startRun(false);
      try {
        await run.progress(5);
        const paused = await run.holderInLongSection((worker) => worker !== CUT_OFF);
        const lateWrite = run.waitFor(
          (event) => event.worker === paused && event.type === 'wrote',
          FAULT_LENGTH + 10_000,
        );
        await run.pause(paused, FAULT_LENGTH);
        await lateWrite;
        await run.progress(3);
      } finally {
        await run.stop();
      }
      const report = check(
        run.events,
        await finalValue(backend.url(resourceServer.port), `record-${String(runs)}`),
      );
      record(t, `${backend.name}, unfenced, pause fault`, report);
      assert.ok(report.overlaps >= 1, 'the paused holder overlapped the next one');
      assert.ok(report.lostUpdates >= 1, 'its late write overwrote newer ones');
      assert.ok(report.staleWritesAccepted >= 1, 'a stale write went through');
      assert.equal(report.overlapsWhileValid, 0, 'leases themselves never overlapped while valid');
    });

    it('references: each resource completes exactly once though one holder is killed and one paused past its liveness', async (t) => {
      const directory = mkdtempSync(join(tmpdir(), 'disref-faults-'));
      const log = join(directory, 'completions.log');
      writeFileSync(log, '');
      const namespace = `faults-references-${String(++runs)}`;
      await backend.markFresh(store.port, namespace);
      const workers = await Promise.all(
        Array.from({ length: 4 }, () =>
          ReferenceWorker.start({
            url: backend.url(store.port),
            namespace,
            log,
            heartbeatInterval: 200,
            processTtl: 1_000,
          }),
        ),
      );
      const resources = Array.from({ length: 12 }, (_, index) => `job:fault-${String(index)}`);
      try {
        for (const worker of workers) {
          for (const resource of resources) await worker.send(`ref ${resource}`);
        }
        const [killed, paused, ...survivors] = workers;
        assert.ok(killed !== undefined && paused !== undefined);
        await killed.kill();
        paused.child.kill('SIGSTOP');
        // The survivors race to dereference, in opposite orders.
        await Promise.all(
          survivors.map((worker, index) =>
            worker.send(
              `derefmany ${(index % 2 === 0 ? resources : [...resources].reverse()).join(' ')}`,
            ),
          ),
        );
        await sleep(2.5 * 1_000); // the paused one is dead to the others now
        paused.child.kill('SIGCONT');
        const late = await paused.send(`derefmany ${resources.join(' ')}`);
        assert.ok(!late.includes('=true'), `a process declared dead completed: ${late}`);

        const completed = (): string[] => readLog(log).map((line) => line.split(' ')[0] ?? '');
        const deadline = Date.now() + 20_000;
        while (new Set(completed()).size < resources.length && Date.now() < deadline) {
          await sleep(50);
        }
        await sleep(1_500); // more recovery rounds, to catch a second completion
        const lines = readLog(log);
        t.diagnostic(
          `${backend.name}: ${String(lines.length)} completions of ${String(resources.length)} resources`,
        );
        for (const resource of resources) {
          const runsOf = lines.filter((line) => line.startsWith(`${resource} `));
          assert.equal(runsOf.length, 1, `${resource} completed ${String(runsOf.length)} times`);
          assert.match(runsOf[0] ?? '', / 1 \d+$/, 'first attempt: no handler failed');
        }
      } finally {
        await Promise.all(workers.map((worker) => worker.kill()));
        rmSync(directory, { recursive: true, force: true });
      }
    });
  });
}
