/**
 * Bad input at every public entry point: a named InvalidArgumentError that
 * says what was expected, thrown before anything reaches the store, and no
 * state left behind.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  BackendError,
  ConflictError,
  connect,
  DisrefError,
  InvalidArgumentError,
  LockLostError,
  LockTimeoutError,
  type Disref,
} from '../src/index.js';

let disref: Disref;
before(async () => {
  disref = await connect({ url: 'memory://validation', namespace: 'validation' });
});
after(async () => {
  await disref.close();
});

function invalid(argument: RegExp | string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(
      error instanceof InvalidArgumentError,
      `not an InvalidArgumentError: ${String(error)}`,
    );
    assert.equal(error.name, 'InvalidArgumentError');
    assert.equal(error.code, 'ERR_DISREF_INVALID_ARGUMENT');
    assert.ok(error instanceof DisrefError);
    if (typeof argument === 'string') assert.equal(error.argument, argument);
    else assert.match(error.argument, argument);
    assert.match(error.message, /expected .+, received /);
    return true;
  };
}

const BAD_KEYS: [string, unknown][] = [
  ['empty string', ''],
  ['number', 42],
  ['null', null],
  ['undefined', undefined],
  ['object', { id: 1 }],
  ['newline', 'a\nb'],
  ['NUL', 'a\u0000b'],
  ['DEL', 'a\u007fb'],
  ['C1 control', 'a\u0085b'],
  ['lone surrogate', 'a\ud800b'],
  ['huge key', 'k'.repeat(9000)],
];

const BAD_TTLS: [string, unknown][] = [
  ['zero', 0],
  ['negative', -1],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['fraction', 1.5],
  ['above maxTtl', 60_001],
  ['string', '100'],
];

describe('keys', () => {
  for (const [label, key] of BAD_KEYS) {
    it(`rejects a ${label} key on every lock kind, synchronously`, () => {
      assert.throws(() => disref.lock(key as string), invalid('key'));
      assert.throws(() => disref.rlock(key as string), invalid('key'));
      assert.throws(() => disref.rwlock(key as string), invalid('key'));
      assert.throws(
        () => disref.conflictLock(key as string, { isConflict: () => false }),
        invalid('key'),
      );
    });
  }

  it('accepts unicode, spaces and long (but bounded) keys', async () => {
    for (const key of ['facture:42 é', '锁:1', 'emoji 🔒', 'x'.repeat(4000), 'with space']) {
      const lease = await disref.lock(key).tryAcquire();
      assert.ok(lease !== null, key);
      await lease.release();
    }
  });
});

describe('lock options', () => {
  for (const [label, ttl] of BAD_TTLS) {
    it(`rejects a ${label} ttl`, () => {
      assert.throws(() => disref.lock('k', { ttl: ttl as number }), invalid('options.ttl'));
    });
  }

  it('rejects bad timeout, retryInterval, fair, signal and unknown options', () => {
    assert.throws(() => disref.lock('k', { timeout: -1 }), invalid('options.timeout'));
    assert.throws(() => disref.lock('k', { timeout: NaN }), invalid('options.timeout'));
    assert.throws(() => disref.lock('k', { retryInterval: 0 }), invalid('options.retryInterval'));
    assert.throws(() => disref.lock('k', { fair: 'yes' as never }), invalid('options.fair'));
    assert.throws(() => disref.lock('k', { signal: {} as never }), invalid('options.signal'));
    assert.throws(() => disref.lock('k', { tll: 5 } as never), invalid('options.tll'));
    assert.throws(() => disref.lock('k', 'fast' as never), invalid('options'));
  });

  it('names the option, the range and the value in the message', () => {
    assert.throws(
      () => disref.lock('k', { ttl: -5 }),
      /^InvalidArgumentError: options\.ttl: expected a whole number of milliseconds in \[1, 60000\], received -5/,
    );
  });

  it('rejects bad per-call options on acquire, tryAcquire and using', async () => {
    const lock = disref.lock('calls');
    await assert.rejects(lock.acquire({ timeout: -5 }), invalid('options.timeout'));
    await assert.rejects(lock.acquire({ signal: 'stop' as never }), invalid('options.signal'));
    await assert.rejects(lock.tryAcquire({ timeout: 5 } as never), invalid('options.timeout'));
    await assert.rejects(lock.using('not a function' as never), invalid('fn'));
    assert.equal(await disref.backend.inspect('calls'), null, 'nothing reached the store');
  });

  it('rejects a bad ttl on extend without losing the lease', async () => {
    const lease = await disref.lock('extend-bad').acquire();
    await assert.rejects(lease.extend(0), invalid('ttl'));
    await assert.rejects(lease.extend(NaN), invalid('ttl'));
    await assert.rejects(lease.extend(10_000_000), invalid('ttl'));
    lease.check();
    assert.equal(await lease.release(), true);
  });

  it('rejects bad conflictLock options', () => {
    assert.throws(() => disref.conflictLock('k', {} as never), invalid('options.isConflict'));
    assert.throws(() => disref.conflictLock('k', undefined as never), invalid('options'));
    assert.throws(
      () => disref.conflictLock('k', { isConflict: () => true, retries: -1 }),
      invalid('options.retries'),
    );
    assert.throws(
      () => disref.conflictLock('k', { isConflict: () => true, reserve: 0 }),
      invalid('options.reserve'),
    );
    assert.throws(
      () => disref.conflictLock('k', { isConflict: () => true, ttl: 5 } as never),
      invalid('options.ttl'),
    );
  });

  it('rejects a bad conflictLock run function', async () => {
    await assert.rejects(
      disref.conflictLock('k', { isConflict: () => true }).run(null as never),
      invalid('fn'),
    );
  });
});

describe('connect()', () => {
  const BAD: [string, unknown, string | RegExp][] = [
    ['unknown scheme', 'mysql://localhost', 'url'],
    ['no scheme', 'localhost:6379', 'url'],
    ['empty url', '', 'url'],
    ['bad port', 'redis://localhost:99999', 'url'],
    ['bad host list', 'memcached://a:1,,b:2', 'url'],
    ['two hosts for redis://', 'redis://a:1,b:2', 'url'],
    ['bad database', 'redis://localhost:6379/x', 'url'],
    ['bad memory name', 'memory://has space', 'url'],
    ['url not a string', { url: 42 }, 'url'],
    ['unknown option', { nmespace: 'x' }, 'options.nmespace'],
    ['bad namespace', { namespace: 'a{b}' }, 'namespace'],
    ['empty namespace', { namespace: '' }, 'namespace'],
    ['bad heartbeatInterval', { heartbeatInterval: 0 }, 'options.heartbeatInterval'],
    [
      'processTtl not above heartbeat',
      { heartbeatInterval: 1000, processTtl: 1000 },
      'options.processTtl',
    ],
    ['bad maxTtl', { maxTtl: -1 }, 'options.maxTtl'],
    ['bad default ttl', { defaults: { ttl: 0 } }, 'options.defaults.ttl'],
    ['default ttl above maxTtl', { maxTtl: 1000, defaults: { ttl: 2000 } }, 'options.defaults.ttl'],
    ['options not an object', 42, 'options'],
  ];
  for (const [label, target, argument] of BAD) {
    it(`rejects ${label}`, async () => {
      await assert.rejects(connect(target as never), invalid(argument));
    });
  }

  it('says plainly which cluster it could not reach, without the password', async () => {
    // Every scheme has a backend now; a cluster nobody serves fails at connect, naming its seeds.
    await assert.rejects(
      connect('redis-cluster://user:s3cret@127.0.0.1:1,127.0.0.1:2'),
      (error: unknown) => {
        assert.ok(error instanceof BackendError, String(error));
        assert.equal(error.address, 'redis-cluster://127.0.0.1:1,127.0.0.1:2');
        assert.match(error.message, /cannot reach the cluster/);
        assert.doesNotMatch(error.message, /s3cret/);
        return true;
      },
    );
  });

  it('never shows a password from the URL in an error', async () => {
    await assert.rejects(connect('redis://user:s3cret@localhost:99999'), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.doesNotMatch(error.message, /s3cret/);
      assert.doesNotMatch(String(error.received), /s3cret/);
      return true;
    });
  });
});

describe('errors', () => {
  it('are named classes with stable codes and their key', () => {
    const cases: [DisrefError, string, string][] = [
      [new LockTimeoutError('k', 5), 'LockTimeoutError', 'ERR_DISREF_LOCK_TIMEOUT'],
      [new LockLostError('k', 7, 'why'), 'LockLostError', 'ERR_DISREF_LOCK_LOST'],
      [new ConflictError('k', 3, new Error('c')), 'ConflictError', 'ERR_DISREF_CONFLICT'],
      [new BackendError('redis://h:1', 'down', { key: 'k' }), 'BackendError', 'ERR_DISREF_BACKEND'],
      [
        new InvalidArgumentError('ttl', 'a number', -1),
        'InvalidArgumentError',
        'ERR_DISREF_INVALID_ARGUMENT',
      ],
    ];
    for (const [error, name, code] of cases) {
      assert.ok(error instanceof DisrefError && error instanceof Error);
      assert.equal(error.name, name);
      assert.equal(error.code, code);
      if (!(error instanceof InvalidArgumentError)) assert.match(error.message, /^lock k: /);
    }
    assert.equal(new LockLostError('k', 7, 'why').fence, 7);
    assert.equal(new BackendError('redis://h:1', 'down').address, 'redis://h:1');
  });
});
