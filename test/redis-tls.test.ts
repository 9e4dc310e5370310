/**
 * rediss:// against a real TLS-only redis-server with a throw-away CA: a
 * process that trusts the CA connects (by IP and by host name) and locks; one
 * that does not is refused with a BackendError, so certificates are checked.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '@redis/client';
import { Redis } from 'ioredis';
import { BackendError, connect } from '../src/index.js';
import { BlackholeProxy } from './faults/blackhole-proxy.js';
import { findBinary, makeTlsFiles, RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const unavailable =
  redisUnavailable() ??
  (findBinary('openssl') === undefined
    ? 'openssl not found: cannot make test certificates'
    : undefined);
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';
const worker = fileURLToPath(new URL('./fixtures/redis-tls-worker.ts', import.meta.url));

if (unavailable !== undefined && !requireServers) {
  console.warn(`\n*** SKIPPING the Redis TLS tests: ${unavailable} ***\n`);
}

describe('redis over TLS (rediss://)', { skip: !requireServers && unavailable }, () => {
  let directory: string;
  let server: RedisServer;
  const namespace = 'tls';

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    directory = mkdtempSync(join(tmpdir(), 'disref-tls-'));
    const tls = makeTlsFiles(directory);
    assert.ok(tls !== undefined);
    server = await RedisServer.start({ tls });
    const admin = new Redis({
      host: '127.0.0.1',
      port: server.port,
      tls: { ca: readFileSync(tls.ca) },
    });
    await markNamespaceFresh(admin, namespace);
    admin.disconnect();
  });
  after(async () => {
    await server.dispose();
    rmSync(directory, { recursive: true, force: true });
  });

  it('connects and locks over TLS when the CA is trusted, by IP and by host name', async () => {
    const port = String(server.port);
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', worker], {
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: server.tls?.ca,
        DISREF_TEST_URLS: `rediss://127.0.0.1:${port} rediss://localhost:${port}`,
        DISREF_TEST_NAMESPACE: namespace,
      },
      timeout: 30_000,
    });
    const fences = [...stdout.matchAll(/^fence (\d+)$/gm)].map((match) => Number(match[1]));
    assert.equal(fences.length, 2, stdout);
    assert.ok((fences[1] ?? 0) > (fences[0] ?? Infinity));
  });

  it('refuses a server whose certificate it cannot verify, with a BackendError', async () => {
    await assert.rejects(connect({ url: server.url, namespace }), (error: unknown) => {
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.address, `rediss://127.0.0.1:${String(server.port)}`);
      assert.match(error.message, /certificate/, 'says why');
      return true;
    });
  });

  // node-redis completes a connection attempt that was under way when the client was
  // closed, and keeps it open. Over TLS the attempt lasts until the server's side of
  // the handshake arrives: a proxy holds new connections, so close() lands there on purpose.
  for (const library of ['node-redis', 'ioredis'] as const) {
    it(`drops a ${library} wake-up connection that was still connecting when close() came`, async () => {
      const ca = readFileSync(server.tls?.ca ?? '');
      const proxy = await BlackholeProxy.start(server.port);
      const admin = new Redis({ host: '127.0.0.1', port: server.port, tls: { ca } });
      const user =
        library === 'node-redis'
          ? await createClient({
              url: `rediss://127.0.0.1:${String(proxy.port)}`,
              socket: { tls: true, ca },
            })
              .on('error', () => undefined)
              .connect()
          : new Redis({ host: '127.0.0.1', port: proxy.port, tls: { ca } });
      try {
        const clients = async (): Promise<number> =>
          String(await admin.client('LIST'))
            .trim()
            .split('\n').length;
        const disref = await connect({ redis: user, namespace }); // the user's client is connected
        const before = await clients(); // admin and the user's client
        proxy.holdNewConnections();
        const subscribing = disref.backend
          .onRelease('k', () => undefined)
          .catch((error: unknown) => error);
        while (proxy.held === 0) await sleep(5); // the wake-up connection waits in its handshake
        await disref.close();
        proxy.heal();
        const outcome = await subscribing;
        assert.ok(outcome instanceof BackendError, `subscribing after close: ${String(outcome)}`);
        await sleep(300); // a connection finished after close() would show by now
        assert.equal(await clients(), before, 'a wake-up connection outlived close()');
      } finally {
        if (user instanceof Redis) user.disconnect();
        else await user.close();
        admin.disconnect();
        await proxy.close();
      }
    });
  }
});
