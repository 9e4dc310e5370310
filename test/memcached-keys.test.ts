/**
 * Where memcached keys go: item names that memcached always accepts (long,
 * spaced, non-ASCII keys hashed), rendezvous hashing that spreads keys
 * evenly and moves only a changed server's share, and locks on odd keys
 * against a real memcached.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect, type Disref } from '../src/index.js';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../src/backends/memcached/epoch-guard.js';
import { itemName, namespaceItem, Rendezvous } from '../src/backends/memcached/keys.js';
import { isValidKey } from '../src/backends/memcached/protocol.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const skip = unavailable !== undefined && process.env.DISREF_REQUIRE_SERVERS !== '1';
if (skip) console.warn(`\n*** SKIPPING the memcached server tests: ${unavailable ?? ''} ***\n`);

const KEYS = Array.from({ length: 30_000 }, (_, i) => `invoice:${String(i)}`);

function owners(servers: readonly string[]): Map<string, string> {
  const ring = new Rendezvous(servers, (server) => server);
  return new Map(KEYS.map((key) => [key, ring.pick(key)]));
}

describe('memcached item names', () => {
  it('uses short, plain keys verbatim under the namespace', () => {
    assert.equal(itemName('shop', 'l', 'invoice:42'), 'shop:l:invoice:42');
    assert.equal(itemName('shop', 'f', 'invoice:42'), 'shop:f:invoice:42');
    assert.equal(namespaceItem('shop', 'epoch'), 'shop:~epoch');
  });

  it('hashes keys memcached would refuse, into distinct valid names', () => {
    const odd = [
      'k'.repeat(250),
      'k'.repeat(251),
      'x'.repeat(8000),
      'with space',
      'tab\there',
      'unicode: ünïcødé ✓',
      'emoji 🔒',
    ];
    const names = odd.map((key) => itemName('shop', 'l', key));
    for (const [index, name] of names.entries()) {
      assert.ok(isValidKey(name), `${JSON.stringify(odd[index])} -> ${name}`);
      assert.match(name, /^shop:l#[A-Za-z0-9_-]{43}$/);
    }
    assert.equal(new Set(names).size, names.length, 'two odd keys share an item');
    assert.notEqual(itemName('shop', 'l', 'with space'), itemName('other', 'l', 'with space'));
    assert.notEqual(itemName('shop', 'l', 'with space'), itemName('shop', 'f', 'with space'));
    // A non-ASCII namespace cannot appear verbatim either.
    assert.ok(isValidKey(itemName('café', 'l', 'a')));
    assert.ok(isValidKey(namespaceItem('café', 'epoch')));
    assert.notEqual(namespaceItem('café', 'epoch'), namespaceItem('café', 'quarantine'));
  });
});

describe('rendezvous hashing', () => {
  const three = ['10.0.0.1:11211', '10.0.0.2:11211', '10.0.0.3:11211'];

  it('spreads keys evenly over the servers, whatever the order they are listed in', () => {
    const placed = owners(three);
    const counts = new Map<string, number>();
    for (const server of placed.values()) counts.set(server, (counts.get(server) ?? 0) + 1);
    for (const server of three) {
      const share = (counts.get(server) ?? 0) / KEYS.length;
      assert.ok(Math.abs(share - 1 / 3) < 0.02, `${server} holds ${(share * 100).toFixed(1)} %`);
    }
    assert.deepEqual(owners([...three].reverse()), placed);
  });

  it('moves only the keys of a removed server, and only keys to an added one', () => {
    const before = owners(three);
    const removed = owners([three[0] ?? '', three[2] ?? '']);
    for (const [key, server] of before) {
      if (server !== three[1]) assert.equal(removed.get(key), server, `${key} moved needlessly`);
    }
    const added = owners([...three, '10.0.0.4:11211']);
    let moved = 0;
    for (const [key, server] of before) {
      const now = added.get(key);
      if (now === server) continue;
      assert.equal(now, '10.0.0.4:11211', `${key} moved between old servers`);
      moved += 1;
    }
    const share = moved / KEYS.length;
    assert.ok(
      Math.abs(share - 1 / 4) < 0.02,
      `${(share * 100).toFixed(1)} % moved to the new server`,
    );
  });
});

describe(
  'locks on odd keys, against memcached',
  { skip: skip ? (unavailable ?? true) : false },
  () => {
    let servers: MemcachedServer[] = [];
    let admin: MemcachedClient;
    const open: Disref[] = [];
    const instance = async (): Promise<Disref> => {
      const disref = await connect({
        url: `memcached://${servers.map((server) => server.hostPort).join(',')}`,
        namespace: 'odd',
      });
      open.push(disref);
      return disref;
    };

    before(async () => {
      servers = await MemcachedServer.startMany(2);
      admin = new MemcachedClient({
        servers: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
      });
      await markNamespaceFresh(admin, 'odd');
    });
    after(async () => {
      await Promise.all(open.map((disref) => disref.close()));
      admin.close();
      await Promise.all(servers.map((server) => server.stop()));
    });

    it('locks keys that are long, spaced or non-ASCII, each on its own', async () => {
      const [a, b] = [await instance(), await instance()];
      const keys = [
        'long:' + 'x'.repeat(5000),
        'long:' + 'x'.repeat(4999) + 'y',
        'with space',
        'ünïcødé ✓',
        'k'.repeat(250),
      ];
      const leases = await Promise.all(keys.map((key) => a.lock(key).acquire({ timeout: 2_000 })));
      for (const key of keys) {
        assert.equal(await b.lock(key).tryAcquire(), null, `${key.slice(0, 20)} not held`);
        const state = await b.backend.inspect(key);
        assert.equal(state?.key, key);
        assert.equal(state.holders.length, 1);
      }
      await Promise.all(leases.map((lease) => lease.release()));
      for (const key of keys) {
        const lease = await b.lock(key).tryAcquire();
        assert.ok(lease !== null, `${key.slice(0, 20)} not free after release`);
        await lease.release();
      }
    });
  },
);
