/**
 * Store addresses: parsing `memory://`, `redis://`, `rediss://`,
 * `redis-cluster://`, `redis-sharded://`, `redis-quorum://` and
 * `memcached://` URLs, and the environment variables
 * that stand in for a URL. Parsed up front so bad input never reaches a store.
 * @module
 */
import { InvalidArgumentError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type StoreAddress =
  | { readonly scheme: 'memory'; readonly name: string }
  | {
      readonly scheme: 'redis' | 'rediss';
      readonly server: HostPort;
      readonly username: string | undefined;
      readonly password: string | undefined;
      readonly database: number;
      /** The URL as given (may hold credentials; never put it in an error). */
      readonly url: string;
    }
  | {
      readonly scheme: 'redis-cluster';
      readonly servers: readonly HostPort[];
      readonly username: string | undefined;
      readonly password: string | undefined;
    }
  | {
      /**
       * Several independent Redis servers: each key on one of them
       * (`redis-sharded`), or each lock on a majority of them (`redis-quorum`).
       */
      readonly scheme: 'redis-sharded' | 'redis-quorum';
      readonly servers: readonly HostPort[];
      readonly username: string | undefined;
      readonly password: string | undefined;
      /** The database number, the same on every server. */
      readonly database: number;
    }
  | { readonly scheme: 'memcached'; readonly servers: readonly HostPort[] };

const SCHEMES = [
  'memory',
  'redis',
  'rediss',
  'redis-cluster',
  'redis-sharded',
  'redis-quorum',
  'memcached',
] as const;
/** Fewest servers of `redis-quorum://`: with fewer, a majority is every server. */
const MIN_QUORUM_SERVERS = 3;
const EXAMPLE_URLS =
  'memory://, redis://127.0.0.1:6379, rediss://host:6380, redis-cluster://h1:7000,h2:7001 or memcached://h1:11211,h2:11211';
const DEFAULT_MEMCACHED = '127.0.0.1:11211';

/** The URL to use when none is passed: `DISREF_URL`, else memcached servers from the environment, else memory. */
export function urlFromEnvironment(env: NodeJS.ProcessEnv = process.env): string {
  const url = env.DISREF_URL?.trim();
  if (url !== undefined && url !== '') return url;
  const servers = memcachedServersFromEnvironment(env);
  return servers === undefined ? 'memory://' : `memcached://${servers}`;
}

function memcachedServersFromEnvironment(env: NodeJS.ProcessEnv): string | undefined {
  for (const name of ['DISREF_MEMCACHED_SERVERS', 'MEMCACHEDLOCK_SERVERS'] as const) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/** Parses a store URL; throws `InvalidArgumentError` naming what is wrong. */
export function parseStoreUrl(url: unknown, env: NodeJS.ProcessEnv = process.env): StoreAddress {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new InvalidArgumentError('url', `a store URL such as ${EXAMPLE_URLS}`, url);
  }
  return parseValidStoreUrl(url.trim(), redactUrl(url.trim()), env);
}

/** The URL with any credentials replaced by `***`, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@');
}

/** `shown` is the URL without credentials; only it goes into errors. */
function parseValidStoreUrl(url: string, shown: string, env: NodeJS.ProcessEnv): StoreAddress {
  const match = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url);
  if (match === null) {
    throw new InvalidArgumentError('url', `a store URL such as ${EXAMPLE_URLS}`, shown);
  }
  const scheme = (match[1] ?? '').toLowerCase();
  const rest = match[2] ?? '';
  switch (scheme) {
    case 'memory':
      return parseMemory(rest, shown);
    case 'redis':
    case 'rediss':
      return parseRedis(scheme, rest, url, shown);
    case 'redis-cluster':
      return parseCluster(rest, shown);
    case 'redis-sharded':
    case 'redis-quorum':
      return parseServerSet(scheme, rest, shown);
    case 'memcached': {
      const hosts = rest.replace(/\/$/, '');
      const servers =
        hosts === '' ? (memcachedServersFromEnvironment(env) ?? DEFAULT_MEMCACHED) : hosts;
      return { scheme: 'memcached', servers: parseHostList(servers, 11211, shown) };
    }
    default:
      throw new InvalidArgumentError(
        'url',
        `one of the schemes ${SCHEMES.map((name) => `${name}://`).join(', ')}`,
        shown,
      );
  }
}

function parseMemory(rest: string, url: string): StoreAddress {
  const name = rest.replace(/\/$/, '');
  if (name !== '' && !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new InvalidArgumentError(
      'url',
      'memory:// or memory://NAME with NAME made of letters, digits, ".", "_" or "-"',
      url,
    );
  }
  return { scheme: 'memory', name };
}

function splitCredentials(rest: string): {
  username: string | undefined;
  password: string | undefined;
  hosts: string;
  path: string;
  query: string;
} {
  const queryAt = rest.indexOf('?');
  const query = queryAt >= 0 ? rest.slice(queryAt + 1) : '';
  const beforeQuery = queryAt >= 0 ? rest.slice(0, queryAt) : rest;
  const at = beforeQuery.lastIndexOf('@');
  const userinfo = at >= 0 ? beforeQuery.slice(0, at) : undefined;
  const afterUser = at >= 0 ? beforeQuery.slice(at + 1) : beforeQuery;
  const slash = afterUser.indexOf('/');
  const hosts = slash >= 0 ? afterUser.slice(0, slash) : afterUser;
  const path = slash >= 0 ? afterUser.slice(slash + 1) : '';
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = decodeURIComponent(colon >= 0 ? userinfo.slice(0, colon) : userinfo);
    username = user === '' ? undefined : user;
    password = colon >= 0 ? decodeURIComponent(userinfo.slice(colon + 1)) : undefined;
  }
  return { username, password, hosts, path, query };
}

function parseRedis(
  scheme: 'redis' | 'rediss',
  rest: string,
  url: string,
  shown: string,
): StoreAddress {
  const { username, password, hosts, path } = splitCredentials(rest);
  const servers = parseHostList(hosts === '' ? '127.0.0.1' : hosts, 6379, shown);
  if (servers.length !== 1 || servers[0] === undefined) {
    throw new InvalidArgumentError(
      'url',
      `one server in ${scheme}:// (use redis-cluster://h1:p1,h2:p2 for a cluster)`,
      shown,
    );
  }
  const database = path.replace(/\/$/, '') === '' ? 0 : Number(path.replace(/\/$/, ''));
  if (!Number.isInteger(database) || database < 0 || database > 1_000_000) {
    throw new InvalidArgumentError(
      'url',
      `a database number after the host, e.g. ${scheme}://host:6379/2`,
      shown,
    );
  }
  return { scheme, server: servers[0], username, password, database, url };
}

function parseCluster(rest: string, url: string): StoreAddress {
  const { username, password, hosts, path } = splitCredentials(rest);
  if (path.replace(/\/$/, '') !== '') {
    throw new InvalidArgumentError(
      'url',
      'redis-cluster://h1:p1,h2:p2 without a database (a cluster has only database 0)',
      url,
    );
  }
  if (hosts === '') {
    throw new InvalidArgumentError(
      'url',
      'redis-cluster:// followed by at least one host:port',
      url,
    );
  }
  return { scheme: 'redis-cluster', servers: parseHostList(hosts, 6379, url), username, password };
}

/** `redis-sharded://` and `redis-quorum://`: several servers, each listed once, one database. */
function parseServerSet(
  scheme: 'redis-sharded' | 'redis-quorum',
  rest: string,
  url: string,
): StoreAddress {
  const { username, password, hosts, path } = splitCredentials(rest);
  if (hosts === '') {
    throw new InvalidArgumentError('url', `${scheme}://h1:p1,h2:p2,h3:p3`, url);
  }
  const servers = parseHostList(hosts, 6379, url);
  const ids = new Set(servers.map(({ host, port }) => `${host.toLowerCase()}:${String(port)}`));
  if (ids.size !== servers.length) {
    throw new InvalidArgumentError(
      'url',
      `each server once in ${scheme}:// (a server listed twice would ${scheme === 'redis-quorum' ? 'vote twice' : 'be two shards'})`,
      url,
    );
  }
  if (scheme === 'redis-quorum' && servers.length < MIN_QUORUM_SERVERS) {
    throw new InvalidArgumentError(
      'url',
      `at least ${String(MIN_QUORUM_SERVERS)} servers in redis-quorum:// (with fewer, a majority is every server and none may fail; use redis:// for one)`,
      url,
    );
  }
  const database = path.replace(/\/$/, '') === '' ? 0 : Number(path.replace(/\/$/, ''));
  if (!Number.isInteger(database) || database < 0 || database > 1_000_000) {
    throw new InvalidArgumentError(
      'url',
      `a database number after the servers, e.g. ${scheme}://h1:6379,h2:6379,h3:6379/2`,
      url,
    );
  }
  return { scheme, servers, username, password, database };
}

/** Parses `h1:p1,h2:p2`; IPv6 hosts go in brackets (`[::1]:6379`). */
export function parseHostList(list: string, defaultPort: number, url: string): HostPort[] {
  const servers: HostPort[] = [];
  for (const raw of list.split(',')) {
    const item = raw.trim();
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::(\d{1,5}))?$/.exec(item);
    const host = match?.[1] ?? match?.[2];
    const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
    if (match === null || host === undefined || port < 1 || port > 65535) {
      throw new InvalidArgumentError(
        'url',
        `host:port items separated by commas, with ports in [1, 65535] (bad item ${JSON.stringify(item)})`,
        url,
      );
    }
    servers.push({ host, port });
  }
  return servers;
}
