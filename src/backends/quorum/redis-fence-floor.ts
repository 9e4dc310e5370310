/**
 * The fence floor of one Redis member of a quorum: raises a lock's fence
 * key with `scripts/raise-fence-1.lua`. It has a connection of its own,
 * because the member's `RedisBackend` keeps its connection private and
 * offers no such operation (the Backend interface has none either); the
 * connection is opened on first use.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { StoreAddress } from '../../config.js';
import { BackendError } from '../../errors.js';
import {
  createIoredisConnection,
  describeAddress,
  describeFailure,
  withDeadline,
  type RedisConnection,
} from '../redis/client.js';
import { lockKeys } from '../redis/keys.js';
import { runScript, type LuaScript } from '../redis/scripts.js';
import type { FenceFloor } from './quorum-backend.js';

type RedisUrlAddress = Extract<StoreAddress, { scheme: 'redis' | 'rediss' }>;

/** Same bound as the member's own operations. */
const OPERATION_TIMEOUT = 5_000;
/** As in RedisBackend: the fence key outlives a grant by 10 × maxTtl, at least 10 minutes. */
const FENCE_TTL_FACTOR = 10;
const MIN_FENCE_TTL = 600_000;

let raiseScript: LuaScript | undefined;

function script(): LuaScript {
  if (raiseScript === undefined) {
    const source = readFileSync(new URL('./scripts/raise-fence-1.lua', import.meta.url), 'utf8');
    raiseScript = {
      name: 'raise-fence-1',
      numberOfKeys: 1,
      source,
      sha: createHash('sha1').update(source).digest('hex'),
    };
  }
  return raiseScript;
}

export class RedisFenceFloor implements FenceFloor {
  private readonly server: RedisUrlAddress;
  private readonly namespace: string;
  private readonly fenceTtl: number;
  private readonly address: string;
  private connection: Promise<RedisConnection> | undefined;
  private closed = false;

  constructor(options: { server: RedisUrlAddress; namespace: string; maxTtl: number }) {
    this.server = options.server;
    this.namespace = options.namespace;
    this.fenceTtl = Math.max(FENCE_TTL_FACTOR * options.maxTtl, MIN_FENCE_TTL);
    this.address = describeAddress(options.server);
  }

  async raise(key: string, fence: number): Promise<void> {
    if (this.closed) throw new BackendError(this.address, 'this backend is closed', { key });
    try {
      const connection = await this.connect();
      await withDeadline(
        runScript(
          connection,
          script(),
          [lockKeys(this.namespace, key).fence],
          [String(fence), String(this.fenceTtl)],
        ),
        OPERATION_TIMEOUT,
      );
    } catch (error) {
      throw new BackendError(
        this.address,
        `raise-fence-1.lua failed: ${describeFailure(error, undefined)}; check that the Redis server is up and reachable from this host`,
        { key, cause: error },
      );
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const connection = await this.connection?.catch(() => undefined);
    await connection?.close();
  }

  private connect(): Promise<RedisConnection> {
    if (this.connection === undefined) {
      const connecting = createIoredisConnection(this.server);
      // A failed creation is retried by the next call.
      connecting.catch(() => {
        if (this.connection === connecting) this.connection = undefined;
      });
      this.connection = connecting;
    }
    return this.connection;
  }
}
