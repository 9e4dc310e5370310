/**
 * Conformance targets over real `memcached` servers started by the harness:
 * one server, and a pool of three (keys spread by consistent hashing). Both
 * run the lock and the reference suites.
 */
import { parseStoreUrl } from '../../src/config.js';
import { connect } from '../../src/index.js';
import { MemcachedClient } from '../../src/backends/memcached/client.js';
import { markNamespaceFresh } from '../../src/backends/memcached/epoch-guard.js';
import { MemcachedServer, memcachedUnavailable } from './memcached-server.js';
import type { BackendTarget } from './targets.js';

/** A target over `count` memcached servers. */
export function memcachedTarget(count: number): BackendTarget {
  const name = count === 1 ? 'memcached (1 server)' : `memcached (pool of ${String(count)})`;
  const unavailable = memcachedUnavailable();
  let servers: MemcachedServer[] = [];
  let admin: MemcachedClient | undefined;
  const url = (): string => `memcached://${servers.map((server) => server.hostPort).join(',')}`;
  return {
    name,
    ...(unavailable === undefined ? {} : { unavailable }),
    references: true,
    setup: async () => {
      servers = await MemcachedServer.startMany(count);
      admin = new MemcachedClient({
        servers: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
      });
    },
    connect: async (options) => {
      if (admin === undefined) throw new Error(`${name}: setup() not run`);
      // These servers just started and granted nothing: skip the start-up
      // quarantine (src/backends/memcached/epoch-guard.ts tests it on purpose).
      await markNamespaceFresh(admin, options.namespace);
      return connect({ ...options, url: url() });
    },
    loseAllData: async () => {
      await admin?.flushAll();
    },
    teardown: async () => {
      admin?.close();
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}

/** Marks `namespace` fresh on the servers of a `memcached://` URL (for benchmarks on new servers). */
export async function markMemcachedNamespaceFresh(url: string, namespace: string): Promise<void> {
  const address = parseStoreUrl(url);
  if (address.scheme !== 'memcached') throw new Error(`not a memcached URL: ${url}`);
  const client = new MemcachedClient({ servers: [...address.servers] });
  try {
    await markNamespaceFresh(client, namespace);
  } finally {
    client.close();
  }
}
