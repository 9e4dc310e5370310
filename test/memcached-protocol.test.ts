/**
 * The memcached meta-protocol client against a real memcached: the reply
 * parser on real reply bytes cut at every position, reads split into tiny
 * pieces by a TCP proxy, 1 MB binary values, error replies, timeouts, and
 * many requests pipelined at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { MemcachedClient } from '../src/backends/memcached/client.js';
import { MemcachedServerError } from '../src/backends/memcached/connection.js';
import {
  encodeRequest,
  ProtocolError,
  ResponseParser,
  type Request,
  type Response,
} from '../src/backends/memcached/protocol.js';
import { MemcachedServer, memcachedUnavailable } from './harness/memcached-server.js';

const unavailable = memcachedUnavailable();
const skip = unavailable !== undefined && process.env.DISREF_REQUIRE_SERVERS !== '1';
if (skip) console.warn(`\n*** SKIPPING the memcached protocol tests: ${unavailable ?? ''} ***\n`);

/** Sends raw bytes to the server and collects the raw reply until it holds `expectTail`. */
function rawExchange(port: number, payload: Buffer, expectTail: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.on('error', reject);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const all = Buffer.concat(chunks);
      if (all.subarray(-expectTail.length).toString('latin1') === expectTail) {
        socket.destroy();
        resolve(all);
      }
    });
  });
}

/** A TCP proxy that forwards replies in tiny pieces, one piece per event-loop turn. */
async function choppingProxy(
  targetPort: number,
  maxPiece: number,
): Promise<{ port: number; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    sockets.add(client).add(upstream);
    client.on('data', (data: Buffer) => upstream.write(data));
    let queue = Promise.resolve();
    upstream.on('data', (data: Buffer) => {
      queue = queue.then(async () => {
        for (let offset = 0; offset < data.length;) {
          const size = 1 + Math.floor(Math.random() * maxPiece);
          client.write(data.subarray(offset, offset + size));
          offset += size;
          await new Promise((resolve) => setImmediate(resolve));
        }
      });
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  server.on('close', () => {
    for (const socket of sockets) socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  return { port: address.port, server };
}

function clientFor(port: number, options: { requestTimeout?: number } = {}): MemcachedClient {
  return new MemcachedClient({ servers: [{ host: '127.0.0.1', port }], ...options });
}

function only<T>(items: readonly T[]): T {
  assert.equal(items.length, 1);
  const [item] = items;
  assert.ok(item !== undefined);
  return item;
}

describe('memcached protocol', { skip: skip ? (unavailable ?? true) : false }, () => {
  let server: MemcachedServer;
  before(async () => {
    server = await MemcachedServer.start();
  });
  after(() => server.stop());

  it('parses real replies identically whatever the split of the byte stream', async () => {
    // Values holding \r\n, "END" and "VA" must not confuse the parser.
    const tricky = Buffer.from('line\r\nEND\r\nVA 3\r\n\x00\xff', 'latin1');
    const requests: Request[] = [
      { command: 'ms', key: 'split:a', value: tricky, flags: ['T60', 'c'] },
      { command: 'mg', key: 'split:a', flags: ['v', 'c', 't', 's', 'k'] },
      { command: 'mg', key: 'split:missing', flags: ['v'] },
      { command: 'ms', key: 'split:a', value: 'x', flags: ['ME'] },
      { command: 'ms', key: 'split:a', value: 'x', flags: ['C999999'] },
      { command: 'md', key: 'split:missing' },
      { command: 'ma', key: 'split:n', flags: ['N60', 'J41', 'v'] },
      { command: 'ma', key: 'split:n', flags: ['v'] },
      { command: 'ma', key: 'split:a', flags: ['v'] }, // CLIENT_ERROR: not a number
      { command: 'version' },
      { command: 'stats' },
      { command: 'mn' },
    ];
    const bytes = await rawExchange(
      server.port,
      Buffer.concat(requests.map(encodeRequest)),
      'MN\r\n',
    );
    const whole = new ResponseParser().push(bytes);
    assert.equal(whole.length, requests.length);
    const [stored, got, missing, notAdded, casMismatch, notFound, created, incremented, error] =
      whole as [
        Response,
        Response,
        Response,
        Response,
        Response,
        Response,
        Response,
        Response,
        Response,
      ];
    assert.equal(stored.kind === 'meta' && stored.status, 'HD');
    assert.ok(got.kind === 'meta' && got.status === 'VA');
    assert.deepEqual(got.value, tricky);
    assert.equal(got.flags.get('k'), 'split:a');
    assert.equal(got.flags.get('s'), String(tricky.length));
    assert.equal(missing.kind === 'meta' && missing.status, 'EN');
    assert.equal(notAdded.kind === 'meta' && notAdded.status, 'NS');
    assert.equal(casMismatch.kind === 'meta' && casMismatch.status, 'EX');
    assert.equal(notFound.kind === 'meta' && notFound.status, 'NF');
    assert.equal(created.kind === 'meta' && created.value?.toString(), '41');
    assert.equal(incremented.kind === 'meta' && incremented.value?.toString(), '42');
    assert.ok(error.kind === 'error' && error.type === 'CLIENT_ERROR');
    const version = whole[9];
    assert.ok(version?.kind === 'version' && /^1\.6\./.test(version.version));
    const stats = whole[10];
    assert.ok(stats?.kind === 'stats' && Number(stats.stats.get('uptime')) > 0);

    // Every cut into two pieces, then one byte at a time: the same replies.
    for (let cut = 0; cut <= bytes.length; cut++) {
      const parser = new ResponseParser();
      const replies = [...parser.push(bytes.subarray(0, cut)), ...parser.push(bytes.subarray(cut))];
      assert.deepEqual(replies, whole, `cut at ${String(cut)}`);
    }
    const parser = new ResponseParser();
    const bytewise: Response[] = [];
    for (const byte of bytes) bytewise.push(...parser.push(Buffer.from([byte])));
    assert.deepEqual(bytewise, whole);
    assert.equal(parser.pendingBytes, 0);
  });

  it('refuses garbage instead of guessing', () => {
    assert.throws(() => new ResponseParser().push(Buffer.from('HELLO\r\n')), ProtocolError);
    assert.throws(() => new ResponseParser().push(Buffer.from('VA 2\r\nabcd')), ProtocolError);
    assert.throws(() => new ResponseParser().push(Buffer.from('VA x\r\n')), ProtocolError);
    assert.throws(() => new ResponseParser().push(Buffer.alloc(9000, 0x41)), ProtocolError);
    assert.throws(() => encodeRequest({ command: 'mg', key: 'has space' }), TypeError);
    assert.throws(() => encodeRequest({ command: 'mg', key: 'k'.repeat(251) }), TypeError);
    assert.throws(
      () => encodeRequest({ command: 'mg', key: 'ok', flags: ['v\r\nflush_all'] }),
      TypeError,
    );
  });

  it('pipelines 2000 concurrent requests over two connections through a proxy that splits every reply', async () => {
    const proxy = await choppingProxy(server.port, 7);
    const client = clientFor(proxy.port);
    try {
      const keys = Array.from({ length: 1000 }, (_, i) => `pipe:${String(i)}`);
      const started = performance.now();
      await Promise.all(
        keys.map((key) =>
          client.meta(client.serverFor(key), [
            { command: 'ms', key, value: `value of ${key}`, flags: ['T60'] },
          ]),
        ),
      );
      const replies = await Promise.all(
        keys.map((key) =>
          client.meta(client.serverFor(key), [{ command: 'mg', key, flags: ['v', 'k'] }]),
        ),
      );
      for (const [index, [reply]] of replies.entries()) {
        assert.equal(reply.flags.get('k'), keys[index]);
        assert.equal(reply.value?.toString(), `value of ${keys[index] ?? ''}`);
      }
      assert.ok(performance.now() - started < 30_000);
    } finally {
      client.close();
      proxy.server.close();
    }
  });

  it('stores and reads back a 1 MB binary value, also in small pieces', async () => {
    const value = randomBytes(1_000_000);
    value.write('\r\nEND\r\n', 1000, 'latin1');
    const direct = clientFor(server.port);
    const proxy = await choppingProxy(server.port, 4096);
    const chopped = clientFor(proxy.port);
    try {
      const target = direct.servers[0];
      assert.ok(target !== undefined);
      const [stored] = await direct.meta(target, [
        { command: 'ms', key: 'big', value, flags: ['T60'] },
      ]);
      assert.equal(stored.status, 'HD');
      const [read] = await direct.meta(target, [{ command: 'mg', key: 'big', flags: ['v'] }]);
      assert.ok(read.value !== undefined && read.value.equals(value));
      const viaProxy = chopped.servers[0];
      assert.ok(viaProxy !== undefined);
      const [again, after] = await chopped.meta(viaProxy, [
        { command: 'mg', key: 'big', flags: ['v', 's'] },
        { command: 'mn' },
      ]);
      assert.ok(again.value !== undefined && again.value.equals(value));
      assert.equal(again.flags.get('s'), '1000000');
      assert.equal(after.status, 'MN');
    } finally {
      direct.close();
      chopped.close();
      proxy.server.close();
    }
  });

  it('reports SERVER_ERROR and CLIENT_ERROR replies, and keeps working after them', async () => {
    const client = clientFor(server.port);
    try {
      const target = only(client.servers);
      await assert.rejects(
        client.meta(target, [
          { command: 'ms', key: 'too-big', value: Buffer.alloc(2_000_000), flags: ['T60'] },
        ]),
        (error: unknown) =>
          error instanceof MemcachedServerError &&
          error.address === server.address &&
          /SERVER_ERROR object too large/.test(error.reason),
      );
      await client.meta(target, [{ command: 'ms', key: 'text', value: 'abc', flags: ['T60'] }]);
      await assert.rejects(
        client.meta(target, [{ command: 'ma', key: 'text', flags: ['v'] }]),
        (error: unknown) =>
          error instanceof MemcachedServerError && /CLIENT_ERROR .*non-numeric/.test(error.reason),
      );
      const [reply] = await client.meta(target, [{ command: 'mg', key: 'text', flags: ['v'] }]);
      assert.equal(reply.value?.toString(), 'abc');
      assert.equal(await client.version(target), (await client.stats(target)).get('version'));
    } finally {
      client.close();
    }
  });

  it('fails a request to a frozen server within the request timeout, then recovers', async () => {
    const frozen = await MemcachedServer.start();
    const client = clientFor(frozen.port, { requestTimeout: 300 });
    try {
      const target = only(client.servers);
      await client.meta(target, [{ command: 'mn' }]);
      frozen.pause();
      const started = performance.now();
      await assert.rejects(
        client.meta(target, [{ command: 'mg', key: 'any', flags: ['v'] }]),
        (error: unknown) =>
          error instanceof MemcachedServerError && error.address === frozen.address,
      );
      const waited = performance.now() - started;
      assert.ok(waited >= 250 && waited < 1_500, `failed after ${waited.toFixed(0)} ms`);
      frozen.resume();
      const [reply] = await client.meta(target, [{ command: 'mn' }]);
      assert.equal(reply.status, 'MN');
    } finally {
      client.close();
      await frozen.stop();
    }
  });

  it('fails fast with the address while a server is down, and reconnects once it is back', async () => {
    const flaky = await MemcachedServer.start();
    const client = clientFor(flaky.port);
    try {
      const target = only(client.servers);
      await client.meta(target, [{ command: 'ms', key: 'k', value: 'v', flags: ['T60'] }]);
      await flaky.stop();
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        await assert.rejects(
          client.meta(target, [{ command: 'mg', key: 'k', flags: ['v'] }]),
          (error: unknown) =>
            error instanceof MemcachedServerError && error.address === flaky.address,
        );
        assert.ok(performance.now() - started < 1_000);
      }
      await flaky.restart();
      const deadline = performance.now() + 5_000;
      for (;;) {
        try {
          const [reply] = await client.meta(target, [{ command: 'mg', key: 'k', flags: ['v'] }]);
          assert.equal(reply.status, 'EN', 'a restarted memcached is empty');
          break;
        } catch (error) {
          // Backing off: the next attempt is at most a second away.
          if (performance.now() > deadline) throw error;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    } finally {
      client.close();
      await flaky.stop();
    }
  });
});
