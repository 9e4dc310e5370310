/**
 * The members of `redis-sharded://` and `redis-quorum://`: one
 * single-server `RedisBackend` per listed server, with the URL's
 * credentials and database. Each member has its own connections, scripts,
 * data-loss marker and fences; the composite on top decides which members
 * an operation goes to.
 * @module
 */
import type { HostPort, StoreAddress } from '../../config.js';
import { describeAddress } from '../redis/client.js';
import { RedisBackend } from '../redis/redis-backend.js';

/** A parsed `redis-sharded://` or `redis-quorum://` URL. */
export type RedisServerSet = Extract<StoreAddress, { scheme: 'redis-sharded' | 'redis-quorum' }>;

/** The single-server address of one listed server (what a `redis://` URL would parse to). */
export type RedisServerAddress = Extract<StoreAddress, { scheme: 'redis' | 'rediss' }>;

/** One listed server as a member: its address, its identity for hashing, and its backend. */
export interface RedisMember {
  readonly id: string;
  readonly address: string;
  readonly server: RedisServerAddress;
  readonly backend: RedisBackend;
}

/** `host:port` as every process spells it, whatever the URL's case or order. */
export function serverId(server: HostPort): string {
  const host = server.host.toLowerCase();
  return `${host.includes(':') ? `[${host}]` : host}:${String(server.port)}`;
}

/** The set's address for errors and status: scheme, servers, database; never credentials. */
export function describeServerSet(set: RedisServerSet): string {
  const database = set.database === 0 ? '' : `/${String(set.database)}`;
  return `${set.scheme}://${set.servers.map(serverId).join(',')}${database}`;
}

/** One `RedisBackend` per listed server. */
export function redisMembers(
  set: RedisServerSet,
  { namespace, maxTtl }: { namespace: string; maxTtl: number },
): RedisMember[] {
  return set.servers.map((hostPort) => {
    const server: RedisServerAddress = {
      scheme: 'redis',
      server: hostPort,
      username: set.username,
      password: set.password,
      database: set.database,
      // Only the parts above are used to connect; this is what the member's URL would be.
      url: `redis://${serverId(hostPort)}/${String(set.database)}`,
    };
    return {
      id: serverId(hostPort),
      address: describeAddress(server),
      server,
      backend: new RedisBackend({ server, namespace, maxTtl }),
    };
  });
}
