/**
 * memcachedlock's API: the `lock` / `rlock` / `zlock` wrappers and decorators,
 * `DONT_LOCK`, key naming, and the default instance from the environment.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import {
  connect,
  ConflictError,
  DONT_LOCK,
  InvalidArgumentError,
  lock,
  rlock,
  zlock,
  type Disref,
} from '../src/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const open: Disref[] = [];
let counter = 0;
async function instances(): Promise<[Disref, Disref]> {
  counter += 1;
  const namespace = `wrappers-${String(counter)}`;
  const made = await Promise.all([connect({ namespace }), connect({ namespace })]);
  open.push(...made);
  const [a, b] = made;
  assert.ok(a !== undefined && b !== undefined);
  return [a, b];
}

after(async () => {
  await Promise.all(open.map((disref) => disref.close()));
});

interface Span {
  key: string;
  start: number;
  end: number;
}

function overlaps(a: Span, b: Span): boolean {
  return a.start < b.end && b.start < a.end;
}

describe('lock() wrapper', () => {
  it('serializes calls on the same key and runs different keys in parallel', async () => {
    const [disref] = await instances();
    const spans: Span[] = [];
    async function saveInvoice(invoice: { id: string }): Promise<string> {
      const start = performance.now();
      await sleep(40);
      spans.push({ key: invoice.id, start, end: performance.now() });
      return `saved ${invoice.id}`;
    }
    const save = lock((invoice: { id: string }) => invoice.id, saveInvoice, { disref });
    const results = await Promise.all([save({ id: 'a' }), save({ id: 'a' }), save({ id: 'b' })]);
    assert.deepEqual(results, ['saved a', 'saved a', 'saved b']);
    const [a1, a2] = spans.filter((span) => span.key === 'a');
    const b = spans.find((span) => span.key === 'b');
    assert.ok(a1 !== undefined && a2 !== undefined && b !== undefined);
    assert.equal(overlaps(a1, a2), false, 'same key ran concurrently');
    assert.ok(overlaps(a1, b) || overlaps(a2, b), 'different keys did not run in parallel');
  });

  it('stores the key as functionName:key', async () => {
    const [disref, other] = await instances();
    let heldDuringCall: boolean | undefined;
    async function saveInvoice(id: number): Promise<void> {
      heldDuringCall = (await other.lock(`saveInvoice:${String(id)}`).tryAcquire()) === null;
    }
    await lock((id: number) => String(id), saveInvoice, { disref })(42);
    assert.equal(heldDuringCall, true);
    const named = lock(
      () => 'k',
      () => other.lock('custom:k').tryAcquire(),
      {
        disref,
        name: 'custom',
      },
    );
    assert.equal(await named(), null);
  });

  it('runs without a lock when getKey returns DONT_LOCK', async () => {
    const [disref, other] = await instances();
    const held = await other.lock('work:busy').acquire();
    const work = lock(
      (key: string) => (key === 'busy' ? DONT_LOCK : key),
      function work(key: string) {
        return Promise.resolve(key);
      },
      { disref, timeout: 0 },
    );
    assert.equal(await work('busy'), 'busy', 'DONT_LOCK ran although the key is held elsewhere');
    await held.release();
  });

  it('rejects bad getKey results and anonymous functions with InvalidArgumentError', async () => {
    const [disref] = await instances();
    const bad = lock(
      () => '',
      async function named() {},
      { disref },
    );
    await assert.rejects(bad(), InvalidArgumentError);
    const notString = lock(
      () => 42 as unknown as string,
      async function named() {},
      { disref },
    );
    await assert.rejects(notString(), InvalidArgumentError);
    assert.throws(
      () =>
        lock(
          () => 'k',
          () => Promise.resolve(),
          { disref },
        ),
      InvalidArgumentError,
    );
    assert.throws(() => lock('k' as never, async function f() {}), InvalidArgumentError);
  });
});

describe('rlock() wrapper', () => {
  it('lets a recursive call on the same key nest instead of deadlocking', async () => {
    const [disref] = await instances();
    const depthFirst: (n: number) => Promise<number> = rlock(
      (_n: number) => 'tree',
      async function walk(n: number): Promise<number> {
        return n === 0 ? 0 : 1 + (await depthFirst(n - 1));
      },
      { disref, timeout: 1_000 },
    );
    assert.equal(await depthFirst(5), 5);
  });
});

describe('zlock() wrapper', () => {
  class Stale extends Error {}
  it('re-runs on a conflict and gives ConflictError after its retries', async () => {
    const [disref] = await instances();
    let runs = 0;
    const save = zlock(
      () => 'doc',
      function save(): Promise<number> {
        runs += 1;
        return runs < 3 ? Promise.reject(new Stale()) : Promise.resolve(runs);
      },
      { disref, isConflict: (error) => error instanceof Stale },
    );
    assert.equal(await save(), 3);
    const never = zlock(
      () => 'doc',
      function never(): Promise<void> {
        return Promise.reject(new Stale());
      },
      { disref, isConflict: (error) => error instanceof Stale, retries: 1 },
    );
    await assert.rejects(never(), ConflictError);
    assert.throws(
      () =>
        zlock(
          () => 'x',
          async function f() {},
          {} as never,
        ),
      InvalidArgumentError,
    );
  });
});

describe('default instance', () => {
  it('is built from the environment when no disref is passed', async () => {
    const previous = process.env.DISREF_URL;
    try {
      process.env.DISREF_URL = 'nosuch://host';
      const failing = lock(
        () => 'k',
        async function failing() {},
      );
      await assert.rejects(failing(), InvalidArgumentError);
      process.env.DISREF_URL = 'memory://wrappers-default';
      const named = await connect('memory://wrappers-default');
      open.push(named);
      const probe = lock(
        () => 'k',
        async function probe() {
          return named.lock('probe:k').tryAcquire();
        },
      );
      assert.equal(await probe(), null, 'the default instance uses DISREF_URL');
    } finally {
      if (previous === undefined) delete process.env.DISREF_URL;
      else process.env.DISREF_URL = previous;
    }
  });
});

describe('decorators compiled by tsc', () => {
  it('lock, rlock, zlock and DONT_LOCK work on class methods', async () => {
    const source = readFileSync(join(root, 'test/fixtures/decorated.ts'), 'utf8');
    const output = ts.transpileModule(source, {
      compilerOptions: {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        experimentalDecorators: false,
      },
    });
    assert.match(output.outputText, /__esDecorate/, 'tsc lowered the standard decorators');
    // Inside the package, so `import 'disref'` resolves to the built package itself.
    const dir = join(root, '.cache', 'compiled');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'decorated.mjs');
    writeFileSync(file, output.outputText);
    const fixture = (await import(
      pathToFileURL(file).href
    )) as typeof import('./fixtures/decorated.js');

    const { connect: connectBuilt } = await import('disref');
    const disref = await connectBuilt({ namespace: 'decorated' });
    const other = await connectBuilt({ namespace: 'decorated' });
    try {
      const events: string[] = [];
      const { Catalog, SpecialCatalog } = fixture.makeCatalog(disref, events);
      const catalog = new Catalog();
      const special = new SpecialCatalog();
      // A base and a subclass instance share the key Catalog.catalogObject:/a, so they serialize.
      await Promise.all([
        catalog.catalogObject({ path: '/a' }),
        special.catalogObject({ path: '/a' }),
        (async () => {
          await sleep(10);
          const probe = await other.lock('Catalog.catalogObject:/a').tryAcquire();
          events.push(probe === null ? 'key held' : 'key free');
          await probe?.release();
        })(),
      ]);
      assert.deepEqual(events, ['start /a', 'key held', 'end /a', 'start /a', 'end /a']);

      const held = await other.lock('Catalog.unlocked:/public').acquire();
      assert.equal(await catalog.unlocked({ path: '/public' }), '/public');
      await held.release();

      assert.equal(await catalog.walk(4), 4, 'rlock nests on recursion');
      assert.equal(await catalog.save('doc'), 3, 'zlock retried the conflicts');
    } finally {
      await Promise.all([disref.close(), other.close()]);
    }
  });
});
