/**
 * Reference counting on memcached across real OS processes (two memcached
 * servers, so heartbeat, held-list and resource items spread over both): a
 * holder killed with SIGKILL is recovered by live processes and each of its
 * resources completes exactly once; concurrent dereferences from several
 * processes give exactly one `true` and one completion; a holder paused with
 * SIGSTOP past its processTtl comes back under a new identity, and its stale
 * reference neither counts nor completes anything again. Completions count
 * themselves in memcached, so those of every process are seen.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';
import { BackendError, connect, type Disref } from '../src/index.js';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { itemName } from '../src/backends/memcached/keys.js';
import { CLOCK_TOLERANCE, MemcachedBackend } from '../src/backends/memcached/memcached-backend.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';
import { eventually } from './harness/eventually.js';

const unavailable = memcachedUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const workerScript = fileURLToPath(
  new URL('./fixtures/memcached-reference-worker.ts', import.meta.url),
);
/** Fast liveness, so that recovery happens within a test. */
const FAST = { heartbeatInterval: 100, processTtl: 500 } as const;
/** Longest time after its last heartbeat before a silent process is surely reaped. */
const REAP_BOUND = FAST.processTtl + CLOCK_TOLERANCE + FAST.heartbeatInterval;

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the memcached reference tests: ${unavailable} ***\n`);
}

/** A copy of `items` in random order. */
function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

/** A worker process (test/fixtures/memcached-reference-worker.ts) and its replies. */
class Worker {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<unknown>;
  private readonly lines: string[] = [];
  private readonly waiting: { prefix: string; resolve: (line: string) => void }[] = [];
  private failure: Error | undefined;

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--import', 'tsx', workerScript], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = once(this.child, 'exit');
    let stderr = '';
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    void this.exited.then(() => {
      this.failure ??= new Error(`worker ${String(this.child.pid)} exited: ${stderr}`);
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (line.startsWith('error ')) this.failure ??= new Error(`worker: ${line}`);
      const index = this.waiting.findIndex(({ prefix }) => line.startsWith(prefix));
      const waiter = index < 0 ? undefined : this.waiting.splice(index, 1)[0];
      if (waiter === undefined) this.lines.push(line);
      else waiter.resolve(line);
    });
  }

  /** The next reply starting with `prefix` (replies may come in any order). */
  async reply(prefix: string, ms = 20_000): Promise<string> {
    const index = this.lines.findIndex((line) => line.startsWith(prefix));
    if (index >= 0) return this.lines.splice(index, 1)[0] ?? '';
    const line = new Promise<string>((resolve) => this.waiting.push({ prefix, resolve }));
    const deadline = performance.now() + ms;
    for (;;) {
      const settled = await Promise.race([line, sleep(25).then(() => undefined)]);
      if (settled !== undefined) return settled;
      if (this.failure !== undefined) throw this.failure;
      if (performance.now() > deadline)
        assert.fail(`no "${prefix}" from the worker in ${String(ms)} ms`);
    }
  }

  /** Sends a command; resolves the last word of its reply. */
  async ask(command: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    const reply = await this.reply(`${command} `);
    return reply.slice(reply.lastIndexOf(' ') + 1);
  }

  /** Resolves the worker's process id once it is connected. */
  async ready(): Promise<string> {
    const line = await this.reply('ready ');
    return line.slice('ready '.length);
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

describe('memcached references across processes', { skip: !requireServers && unavailable }, () => {
  let servers: MemcachedServer[];
  let admin: MemcachedClient;
  let url: string;
  let namespaceCounter = 0;
  const workers: Worker[] = [];
  const open: Disref[] = [];

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    servers = await MemcachedServer.startMany(2);
    admin = new MemcachedClient({
      servers: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
    });
    url = `memcached://${servers.map((server) => server.hostPort).join(',')}`;
  });
  afterEach(async () => {
    for (const worker of workers.splice(0)) worker.stop();
    await Promise.all(open.splice(0).map((disref) => disref.close()));
  });
  after(async () => {
    admin.close();
    await Promise.all(servers.map((server) => server.stop()));
  });

  const freshNamespace = async (): Promise<string> => {
    namespaceCounter += 1;
    const namespace = `refs${String(process.pid)}-${String(namespaceCounter)}`;
    await markNamespaceFresh(admin, namespace);
    return namespace;
  };
  const startWorker = async (
    namespace: string,
    kinds: string[] = [],
  ): Promise<[Worker, string]> => {
    const worker = new Worker({
      DISREF_TEST_SERVERS: servers.map((server) => server.hostPort).join(','),
      DISREF_TEST_NAMESPACE: namespace,
      DISREF_TEST_HEARTBEAT: String(FAST.heartbeatInterval),
      DISREF_TEST_PROCESS_TTL: String(FAST.processTtl),
      DISREF_TEST_KINDS: kinds.join(','),
    });
    workers.push(worker);
    return [worker, await worker.ready()];
  };
  /** A process in this test process, with a handler that counts like the workers'. */
  const join = async (namespace: string, kinds: string[] = []): Promise<Disref> => {
    const disref = await connect({ url, namespace, ...FAST });
    open.push(disref);
    for (const kind of kinds) {
      disref.onComplete(kind, async (resource) => {
        await countCompletion(namespace, resource);
      });
    }
    return disref;
  };
  const countCompletion = async (namespace: string, resource: string): Promise<void> => {
    const key = `${namespace}:completed:${resource}`;
    await admin.meta(admin.serverFor(key), [{ command: 'ma', key, flags: ['N0', 'J1'] }]);
  };
  /** How many times the completion of `resource` ran, in any process. */
  const completions = async (namespace: string, resource: string): Promise<number> => {
    const key = `${namespace}:completed:${resource}`;
    const [item] = await admin.meta(admin.serverFor(key), [{ command: 'mg', key, flags: ['v'] }]);
    return item.status === 'VA' ? Number(item.value?.toString()) : 0;
  };
  const backendOf = (disref: Disref): MemcachedBackend => {
    assert.ok(disref.backend instanceof MemcachedBackend);
    return disref.backend;
  };

  it('snapshot shows registered processes, what they hold or left to complete, and those resources’ locks; says what it cannot list', async () => {
    const namespace = await freshNamespace();
    const [a, b] = [await join(namespace), await join(namespace)];
    const ra = await a.reference('snap:1');
    await b.reference('snap:1');
    await ra.incrementTimesModified(3);
    const lease = await a.lock('snap:1').acquire();
    const unlisted = await a.lock('unreferenced').acquire();
    // Dereferenced last, with no handler anywhere: it waits, completing, in the pending registry.
    const warned = new Promise((resolve) => process.once('warning', resolve));
    assert.equal(await (await b.reference('todo:1')).dereference(), true);
    await warned;

    const snapshot = await backendOf(a).snapshot();
    for (const disref of [a, b]) {
      const seen = snapshot.processes.find(({ id }) => id === disref.id);
      assert.ok(seen !== undefined, `process ${disref.id} listed`);
      assert.equal(seen.info?.pid, process.pid);
      assert.ok(
        seen.ttlLeft > 0 && seen.ttlLeft <= FAST.processTtl,
        `ttlLeft ${String(seen.ttlLeft)}`,
      );
      assert.ok(seen.heartbeatAge !== undefined && seen.heartbeatAge <= FAST.processTtl);
    }
    const references = [...snapshot.references].sort((x, y) =>
      x.resource.localeCompare(y.resource),
    );
    assert.deepEqual(
      references.map((state) => ({ ...state, holders: [...state.holders].sort() })),
      [
        { resource: 'snap:1', holders: [a.id, b.id].sort(), timesModified: 3, completing: false },
        { resource: 'todo:1', holders: [], timesModified: 0, completing: true },
      ],
    );
    assert.deepEqual(
      snapshot.locks.map((lock) => [lock.key, lock.holders.map((holder) => holder.fence)]),
      [['snap:1', [lease.fence]]],
      'only locks of resources it knows of',
    );
    assert.match(snapshot.incomplete ?? '', /memcached cannot list keys/);
    const narrowed = await backendOf(a).snapshot('todo:');
    assert.deepEqual(
      narrowed.references.map(({ resource }) => resource),
      ['todo:1'],
      'a prefix keeps only the resources that start with it',
    );
    assert.deepEqual(narrowed.locks, []);
    assert.equal(narrowed.processes.length, snapshot.processes.length, 'every process still');
    await lease.release();
    await unlisted.release();
  });

  it('keeps registered processes referencing while the registry server is down, fails new registrations naming it, and retries a completion that failed meanwhile', async () => {
    const pool = await MemcachedServer.startMany(2);
    const poolAdmin = new MemcachedClient({
      servers: pool.map((server) => ({ host: '127.0.0.1', port: server.port })),
    });
    const poolUrl = `memcached://${pool.map((server) => server.hostPort).join(',')}`;
    const namespace = `registry-outage-${String(process.pid)}`;
    await markNamespaceFresh(poolAdmin, namespace);
    // Background errors (recovery needs the registry) are expected during the outage.
    const quietJoin = async (): Promise<Disref> => {
      const disref = await connect({ url: poolUrl, namespace, ...FAST, onError: () => undefined });
      open.push(disref);
      return disref;
    };
    try {
      const probe = await quietJoin();
      const registryAddress = backendOf(probe).registryAddress;
      const registryServer = pool.find((server) => server.address === registryAddress);
      const up = pool.find((server) => server.address !== registryAddress);
      assert.ok(registryServer !== undefined && up !== undefined);
      // Processes whose own heartbeat items live on the server that stays up.
      const kept: Disref[] = [];
      while (kept.length < 2) {
        const candidate = await quietJoin();
        if (poolAdmin.serverFor(`p:${candidate.id}`).address === up.address) kept.push(candidate);
      }
      const [a, b] = kept as [Disref, Disref];
      a.onComplete('out', (resource) => countCompletion(namespace, resource));
      const onUp: string[] = [];
      for (let i = 0; onUp.length < 2; i++) {
        const resource = `out:${String(i)}`;
        if (backendOf(a).serverAddressOf(resource) === up.address) onUp.push(resource);
      }
      const [first, second] = onUp as [string, string];
      const [a1, a2, b1] = [
        await a.reference(first),
        await a.reference(second),
        await b.reference(first),
      ];

      await registryServer.stop();
      // A new process cannot register for references (or start at all, if its heartbeat
      // item hashes to the stopped server): either way the error names that server.
      await assert.rejects(
        async () => (await quietJoin()).reference(first),
        (error: unknown) => error instanceof BackendError && error.address === registryAddress,
      );
      const lease = await a.lock(first).acquire();
      await lease.release();
      assert.equal(await a1.count(), 2);
      assert.equal(await b1.dereference(), false);
      assert.equal(await a1.dereference(), true, 'the last dereference completes');
      assert.equal(await completions(namespace, first), 1);
      // It could not be queued, but it is done: a's held list (on the server that
      // stayed up) lets it go, or a would stay registered with it forever.
      const heldByA = async (): Promise<string> => {
        const [item] = await poolAdmin.meta(poolAdmin.serverFor(`p:${a.id}`), [
          { command: 'mg', key: itemName(namespace, 'h', a.id), flags: ['v'] },
        ]);
        return item.value?.toString() ?? '';
      };
      assert.ok(!(await heldByA()).includes(first), `still held: ${await heldByA()}`);
      assert.ok((await heldByA()).includes(second), 'a still holds the other one');
      await assert.rejects(
        a2.dereference(() => {
          throw new Error('fails during the outage');
        }),
        /fails during the outage/,
      );

      // Back, empty: processes register again, and the failed completion is retried.
      await registryServer.restart();
      await eventually(
        async () => (await completions(namespace, second)) === 1,
        10_000,
        'the completion that failed during the outage was retried',
      );
      assert.ok(
        (await backendOf(b).snapshot()).processes.some(({ id }) => id === b.id),
        'b registered again',
      );
      await eventually(
        async () => (await heldByA()) === '',
        10_000,
        'a holds nothing once both are complete',
      );
    } finally {
      await Promise.all(open.splice(0).map((disref) => disref.close()));
      poolAdmin.close();
      await Promise.all(pool.map((server) => server.stop()));
    }
  });

  it('recovers a holder killed with SIGKILL: its resources complete once each, on live processes', async () => {
    const namespace = await freshNamespace();
    const [a, b] = [await join(namespace, ['crash']), await join(namespace, ['crash'])];
    const [worker, workerId] = await startWorker(namespace, ['crash']);
    for (const resource of ['crash:1', 'crash:2', 'crash:shared']) {
      assert.equal(await worker.ask(`ref ${resource}`), workerId);
    }
    const shared = await a.reference('crash:shared');
    assert.equal(await shared.count(), 2);
    assert.ok((await backendOf(a).snapshot()).processes.some(({ id }) => id === workerId));

    worker.child.kill('SIGKILL');
    await worker.exited;
    const killedAt = performance.now();
    await eventually(
      async () =>
        (await completions(namespace, 'crash:1')) >= 1 &&
        (await completions(namespace, 'crash:2')) >= 1,
      REAP_BOUND + 5_000,
      'the dead holder’s resources were completed',
    );
    const took = performance.now() - killedAt;
    // Its last heartbeat was at most one interval before the kill.
    assert.ok(
      took >= FAST.processTtl - FAST.heartbeatInterval,
      `declared dead after ${took.toFixed(0)} ms`,
    );
    assert.ok(took < REAP_BOUND + 2_000, `recovered after ${took.toFixed(0)} ms`);
    assert.equal(await shared.count(), 1, 'the dead holder was pruned');
    assert.equal(await shared.dereference(), true);
    await sleep(5 * FAST.heartbeatInterval); // more recovery rounds in a and b: nothing runs again
    for (const resource of ['crash:1', 'crash:2', 'crash:shared']) {
      assert.equal(await completions(namespace, resource), 1, `${resource} completed once`);
      assert.equal(await b.backend.inspect(resource), null);
    }
    await eventually(
      async () => !(await backendOf(b).snapshot()).processes.some(({ id }) => id === workerId),
      2_000,
      'the reaped process left the registry',
    );
  });

  it('gives exactly one true and one completion per resource when 8 processes dereference 50 resources at once', async () => {
    const namespace = await freshNamespace();
    const resources = Array.from({ length: 50 }, (_, i) => `batch:${String(i)}`);
    const started = await Promise.all(Array.from({ length: 8 }, () => startWorker(namespace)));
    // Each process takes its 50 references concurrently (one held-list write combines them).
    await Promise.all(
      started.flatMap(([worker]) => resources.map((resource) => worker.ask(`ref ${resource}`))),
    );
    const observer = backendOf(await join(namespace));
    for (const resource of resources) assert.equal(await observer.countReferences(resource), 8);
    // Every command is written before any reply is awaited, each process in its own random
    // order, so the processes really race on every resource.
    const results = await Promise.all(
      started.map(([worker]) =>
        Promise.all(
          shuffled(resources).map(async (resource) => [
            resource,
            await worker.ask(`deref ${resource}`),
          ]),
        ),
      ),
    );
    for (const resource of resources) {
      const answers = results.flat().filter(([name]) => name === resource);
      assert.equal(
        answers.filter(([, last]) => last === 'true').length,
        1,
        `${resource}: ${String(answers)}`,
      );
      assert.equal(await completions(namespace, resource), 1, `${resource} completed once`);
      assert.equal(await observer.countReferences(resource), 0);
      const [item] = await admin.meta(admin.serverFor(`${namespace}:${resource}`), [
        { command: 'mg', key: itemName(namespace, 'r', resource), flags: ['v'] },
      ]);
      assert.equal(item.status, 'EN', `${resource}: its item was deleted after its completion`);
    }
    const snapshot = await observer.snapshot();
    assert.deepEqual(snapshot.references, [], 'no held lists or pending entries left behind');
  });

  it('gives a holder paused past its processTtl a new identity; its stale reference is gone', async () => {
    const namespace = await freshNamespace();
    const a = await join(namespace, ['paused']);
    const [worker, oldId] = await startWorker(namespace, ['paused']);
    await worker.ask('ref paused:1');
    const mine = await a.reference('paused:1');
    assert.equal(await mine.count(), 2);

    worker.child.kill('SIGSTOP');
    const stoppedAt = performance.now();
    await eventually(
      async () => (await mine.count()) === 1,
      REAP_BOUND + 5_000,
      'the paused holder was pruned',
    );
    assert.ok(performance.now() - stoppedAt >= FAST.processTtl - FAST.heartbeatInterval);
    assert.equal(await mine.dereference(), true, 'this process is the last live holder');
    assert.equal(await completions(namespace, 'paused:1'), 1);

    worker.child.kill('SIGCONT');
    let newId = oldId;
    await eventually(
      async () => {
        newId = await worker.ask('id');
        return newId !== oldId;
      },
      5_000,
      'the resumed process took a new identity',
    );
    assert.equal(await worker.ask('held paused:1'), 'false');
    assert.equal(
      await worker.ask('deref paused:1'),
      'false',
      'a late dereference completes nothing',
    );
    assert.equal(await completions(namespace, 'paused:1'), 1);
    assert.equal(
      await backendOf(a).countReferences('paused:1'),
      0,
      'the stale holder does not count',
    );
    // New work runs under the new identity, in a new lifetime of the resource.
    assert.equal(await worker.ask('ref paused:1'), newId);
    assert.equal(await backendOf(a).countReferences('paused:1'), 1);
    assert.equal(await worker.ask('deref paused:1'), 'true');
    assert.equal(await completions(namespace, 'paused:1'), 2);
  });

  it('declares a process paused past its processTtl dead by its own clock even when nobody else watched', async () => {
    const namespace = await freshNamespace();
    const [worker, oldId] = await startWorker(namespace, ['alone']);
    await worker.ask('ref alone:1');
    worker.child.kill('SIGSTOP');
    // Past its ttl, but short of ttl + CLOCK_TOLERANCE: no other process would prune it yet.
    await sleep(FAST.processTtl + 2 * FAST.heartbeatInterval);
    worker.child.kill('SIGCONT');
    await eventually(async () => (await worker.ask('id')) !== oldId, 5_000, 'a new identity');
    assert.equal(await worker.ask('held alone:1'), 'false');
    // Its recovery finds its own old identity dead and completes what it left.
    await eventually(
      async () => (await completions(namespace, 'alone:1')) === 1,
      REAP_BOUND + 5_000,
      'the orphaned resource was completed',
    );
    assert.equal(await worker.ask('deref alone:1'), 'false');
    await sleep(5 * FAST.heartbeatInterval);
    assert.equal(await completions(namespace, 'alone:1'), 1);
  });
});
