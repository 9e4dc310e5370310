/**
 * Where a key lives: its memcached item name, and which server of the pool
 * holds it.
 *
 * Item names: `<namespace>:<tag>:<key>`, where the tag says what the item
 * is (`l` lock record, `f` fence counter, `p` process heartbeat, `h` the
 * resources a process holds, `r` a reference-counted resource). A name
 * that memcached would refuse (over 250 bytes, or holding a space, a control
 * character or any non-ASCII byte) is replaced by
 * `<namespace>:<tag>#<sha256 of the full name, base64url>`, so no key is
 * ever refused by the store. (The seed used md5; SHA-256 costs the same
 * here and has no known collisions.) Namespace-wide items use the tag `~`:
 * `<namespace>:~epoch`, `<namespace>:~quarantine`, and the registries of
 * reference counting, `<namespace>:~processes` and `<namespace>:~pending`.
 *
 * Servers: rendezvous (highest random weight) hashing. Each server scores
 * a key by a hash of (server, key) and the highest score wins, so adding a
 * server moves only the keys it now wins (about 1/n) and removing one moves
 * only its own keys; every process that lists the same servers (in any
 * order) picks the same server for a key.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { isValidKey } from './protocol.js';

/** What an item holds. */
export type ItemTag = 'l' | 'f' | 'p' | 'h' | 'r';

/** The item name for `key` under `namespace`, hashed when memcached could not hold it. */
export function itemName(namespace: string, tag: ItemTag, key: string): string {
  const full = `${namespace}:${tag}:${key}`;
  if (isValidKey(full)) return full;
  const digest = createHash('sha256').update(full, 'utf8').digest('base64url');
  const short = `${namespace}:${tag}#${digest}`;
  // A namespace with non-ASCII characters cannot appear verbatim either.
  return isValidKey(short) ? short : `~#${digest}`;
}

/** A namespace-wide item: the data-loss marker and quarantine, the reference registries. */
export type NamespaceItem = 'epoch' | 'quarantine' | 'processes' | 'pending';

/** Name of a namespace-wide item. */
export function namespaceItem(namespace: string, name: NamespaceItem): string {
  const full = `${namespace}:~${name}`;
  if (isValidKey(full)) return full;
  return `~#${createHash('sha256').update(full, 'utf8').digest('base64url')}:${name}`;
}

/** Picks a server for a routing key by rendezvous hashing. */
export class Rendezvous<T> {
  private readonly entries: readonly {
    readonly server: T;
    readonly id: string;
    readonly seed: Hash;
  }[];

  /** `id` names a server the same way in every process (its `host:port`). */
  constructor(servers: readonly T[], id: (server: T) => string) {
    if (servers.length === 0) throw new RangeError('rendezvous hashing needs at least one server');
    this.entries = servers.map((server) => ({
      server,
      id: id(server),
      seed: createHash('md5').update(`${id(server)}\n`, 'utf8'),
    }));
  }

  /** The server that owns `key`. */
  pick(key: string): T {
    let best: T | undefined;
    let bestId = '';
    let bestScore = -1;
    for (const { server, id, seed } of this.entries) {
      const score = seed.copy().update(key, 'utf8').digest().readUIntBE(0, 6);
      // Ties (1 in 2^48) go to the smaller id, so the order of the list never matters.
      if (score > bestScore || (score === bestScore && id < bestId)) {
        best = server;
        bestId = id;
        bestScore = score;
      }
    }
    // The constructor refused an empty list, so a server was picked.
    return best as T;
  }
}
