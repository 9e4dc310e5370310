/** Store URLs and the environment variables that stand in for them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseStoreUrl, redactUrl, urlFromEnvironment } from '../src/config.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('parseStoreUrl', () => {
  it('parses memory URLs, default and named', () => {
    assert.deepEqual(parseStoreUrl('memory://'), { scheme: 'memory', name: '' });
    assert.deepEqual(parseStoreUrl('memory://tests'), { scheme: 'memory', name: 'tests' });
  });

  it('parses redis and rediss URLs with credentials and database', () => {
    const address = parseStoreUrl('rediss://me:p%40ss@cache.local:6380/3');
    assert.equal(address.scheme, 'rediss');
    if (address.scheme !== 'rediss') return;
    assert.deepEqual(address.server, { host: 'cache.local', port: 6380 });
    assert.equal(address.username, 'me');
    assert.equal(address.password, 'p@ss');
    assert.equal(address.database, 3);
    const plain = parseStoreUrl('redis://127.0.0.1');
    assert.ok(plain.scheme === 'redis');
    assert.deepEqual(plain.server, { host: '127.0.0.1', port: 6379 });
    assert.equal(plain.database, 0);
    const ipv6 = parseStoreUrl('redis://[::1]:7000');
    assert.ok(ipv6.scheme === 'redis');
    assert.deepEqual(ipv6.server, { host: '::1', port: 7000 });
  });

  it('parses cluster and memcached host lists', () => {
    const cluster = parseStoreUrl('redis-cluster://a:7000,b:7001');
    assert.ok(cluster.scheme === 'redis-cluster');
    assert.deepEqual(cluster.servers, [
      { host: 'a', port: 7000 },
      { host: 'b', port: 7001 },
    ]);
    const pool = parseStoreUrl('memcached://10.0.0.1:11211,10.0.0.2');
    assert.ok(pool.scheme === 'memcached');
    assert.deepEqual(pool.servers, [
      { host: '10.0.0.1', port: 11211 },
      { host: '10.0.0.2', port: 11211 },
    ]);
  });

  it('takes memcached servers from the environment when the URL names none', () => {
    const fromEnv = parseStoreUrl('memcached://', { MEMCACHEDLOCK_SERVERS: 'm1:1,m2:2' });
    assert.ok(fromEnv.scheme === 'memcached');
    assert.deepEqual(fromEnv.servers, [
      { host: 'm1', port: 1 },
      { host: 'm2', port: 2 },
    ]);
    const preferred = parseStoreUrl('memcached://', {
      DISREF_MEMCACHED_SERVERS: 'd:3',
      MEMCACHEDLOCK_SERVERS: 'm:4',
    });
    assert.ok(preferred.scheme === 'memcached');
    assert.deepEqual(preferred.servers, [{ host: 'd', port: 3 }]);
    const fallback = parseStoreUrl('memcached://', {});
    assert.ok(fallback.scheme === 'memcached');
    assert.deepEqual(fallback.servers, [{ host: '127.0.0.1', port: 11211 }]);
  });

  it('rejects unknown schemes and malformed addresses', () => {
    for (const url of [
      'http://x',
      'redis:/x',
      'redis://host:0',
      'memcached://a b:1',
      'redis-cluster://',
    ]) {
      assert.throws(() => parseStoreUrl(url), InvalidArgumentError, url);
    }
  });
});

describe('urlFromEnvironment', () => {
  it('prefers DISREF_URL, then memcached servers, then memory', () => {
    assert.equal(
      urlFromEnvironment({ DISREF_URL: 'redis://r:1', MEMCACHEDLOCK_SERVERS: 'm:1' }),
      'redis://r:1',
    );
    assert.equal(urlFromEnvironment({ MEMCACHEDLOCK_SERVERS: 'm:1' }), 'memcached://m:1');
    assert.equal(urlFromEnvironment({ DISREF_MEMCACHED_SERVERS: ' d:2 ' }), 'memcached://d:2');
    assert.equal(urlFromEnvironment({}), 'memory://');
    assert.equal(urlFromEnvironment({ DISREF_URL: '  ' }), 'memory://');
  });
});

describe('redactUrl', () => {
  it('hides credentials', () => {
    assert.equal(redactUrl('redis://user:secret@h:1/0'), 'redis://***@h:1/0');
    assert.equal(redactUrl('redis://h:1'), 'redis://h:1');
  });
});
