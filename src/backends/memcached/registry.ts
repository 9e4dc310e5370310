/**
 * A namespace-wide registry: one memcached item holding a small map, on the
 * one server that rendezvous hashing picks for the namespace's registries,
 * changed by compare-and-swap. memcached cannot list keys, so recovery
 * finds processes and resources awaiting completion here. If that server is
 * down, what needs a registry fails with a `BackendError` naming it (see
 * `memcached-references.ts` for what goes on meanwhile).
 *
 * Registries never expire (`T0`) and are bounded by {@link MAX_REGISTRY_BYTES}
 * (a write that would pass it fails with a clear error): entries are
 * removed when a process is reaped or closes, and when a completion ends.
 * @module
 */
import type { MemcachedClient, ServerPool } from './client.js';
import { MemcachedServerError } from './connection.js';
import { compareAndSwap } from './cas.js';
import type { MetaResponse } from './protocol.js';

/** Largest registry, in bytes: well under memcached's default 1 MB item limit. */
export const MAX_REGISTRY_BYTES = 512 * 1024;

export interface RegistryOptions<V> {
  readonly client: MemcachedClient;
  readonly server: ServerPool;
  readonly key: string;
  /** Names the registry in errors, e.g. `process registry`. */
  readonly what: string;
  readonly encode: (entries: ReadonlyMap<string, V>) => string;
  readonly decode: (data: Buffer) => Map<string, V>;
  readonly same: (a: V, b: V) => boolean;
}

export class Registry<V> {
  readonly server: ServerPool;
  private readonly options: RegistryOptions<V>;

  constructor(options: RegistryOptions<V>) {
    this.options = options;
    this.server = options.server;
  }

  /** The entries now. */
  async read(): Promise<Map<string, V>> {
    const [item] = await this.options.client.meta(this.server, [
      { command: 'mg', key: this.options.key, flags: ['v'] },
    ]);
    return this.decode(item);
  }

  /** Sets `name` to `value` (no write when it already is). */
  async put(name: string, value: V): Promise<void> {
    await this.change((entries) => {
      const current = entries.get(name);
      if (current !== undefined && this.options.same(current, value)) return false;
      entries.set(name, value);
      return true;
    });
  }

  /** Removes `name`, only while its value is one `when` accepts (so a newer entry survives). */
  async remove(name: string, when: (value: V) => boolean = () => true): Promise<void> {
    await this.change((entries) => {
      const current = entries.get(name);
      if (current === undefined || !when(current)) return false;
      entries.delete(name);
      return true;
    });
  }

  /** One compare-and-swap round: `edit` changes the map in place and says whether it did. */
  private change(edit: (entries: Map<string, V>) => boolean): Promise<void> {
    const { client, key, what, encode } = this.options;
    return compareAndSwap(client, { server: this.server, key, exptime: 0, what }, (item) => {
      const entries = this.decode(item);
      if (!edit(entries)) return { kind: 'keep', result: undefined };
      if (entries.size === 0) return { kind: 'delete', result: undefined };
      const value = encode(entries);
      if (Buffer.byteLength(value) > MAX_REGISTRY_BYTES) {
        throw new MemcachedServerError(
          this.server.address,
          `${what} ${key} is full (${String(entries.size)} entries); use more namespaces or fewer processes`,
        );
      }
      return { kind: 'set', value, result: undefined };
    });
  }

  private decode(item: MetaResponse): Map<string, V> {
    if (item.status !== 'VA' || item.value === undefined) return new Map();
    try {
      return this.options.decode(item.value);
    } catch (error) {
      throw new MemcachedServerError(
        this.server.address,
        `item ${this.options.key} is not a disref ${this.options.what} (${String(error)}); another application may use this namespace`,
        { cause: error },
      );
    }
  }
}
