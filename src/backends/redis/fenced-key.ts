/**
 * A Redis key guarded by fences: a hash holding the value and the highest
 * fence seen, read and written only through Lua scripts that compare fences
 * atomically. One key, so it works on a Redis Cluster too.
 * @module
 */
import { BackendError, StaleFenceError } from '../../errors.js';
import { checkFence, checkValue, type FencedResource } from '../../fenced.js';
import { validateKey } from '../../validate.js';
import { connectionForClient, type RedisClientLike, type RedisConnection } from './client.js';
import { loadScript, runScript, type LuaScript } from './scripts.js';

let scripts: { read: LuaScript; write: LuaScript } | undefined;

function fencedScripts(): { read: LuaScript; write: LuaScript } {
  scripts ??= { read: loadScript('fenced-read-1'), write: loadScript('fenced-write-1') };
  return scripts;
}

/** Reply of both scripts: {1, value-or-fence} or {0, highest}. */
function parseReply(reply: unknown): { ok: boolean; payload: string | null } {
  if (!Array.isArray(reply) || reply.length !== 2)
    throw new Error('disref: unexpected fenced-key reply');
  const [status, payload] = reply as [unknown, unknown];
  return {
    ok: Number(status) === 1,
    payload:
      typeof payload === 'string' ? payload : payload instanceof Buffer ? payload.toString() : null,
  };
}

/**
 * A fenced resource stored at `key` (a hash) through `client` (ioredis or
 * node-redis, never closed by disref).
 *
 * @example
 * const balance = fencedRedisKey(redis, 'account:7:balance');
 * await lock.using(async (lease) => {
 *   const current = Number(await balance.read(lease.fence));
 *   await balance.write(lease.fence, String(current + 10));
 * });
 */
export function fencedRedisKey(client: RedisClientLike, key: string): FencedResource {
  validateKey(key);
  const { connection, address } = connectionForClient(client, 'client');
  return new FencedRedisKey(connection, address, key);
}

class FencedRedisKey implements FencedResource {
  constructor(
    private readonly connection: RedisConnection,
    private readonly address: string,
    readonly key: string,
  ) {}

  private async run(
    script: LuaScript,
    args: readonly string[],
  ): Promise<{ ok: boolean; payload: string | null }> {
    try {
      return parseReply(await runScript(this.connection, script, [this.key], args));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new BackendError(this.address, `fenced ${script.name} failed: ${reason}`, {
        cause: error,
        key: this.key,
      });
    }
  }

  async read(fence: number): Promise<string | undefined> {
    const seen = checkFence(fence);
    const reply = parseReply(
      await runScript(this.connection, fencedScripts().read, [this.key], [String(seen)]),
    );
    if (!reply.ok) throw new StaleFenceError(this.key, seen, Number(reply.payload));
    return reply.payload ?? undefined;
  }

  async write(fence: number, value: string): Promise<void> {
    const seen = checkFence(fence);
    const reply = await this.run(fencedScripts().write, [String(seen), checkValue(value)]);
    if (!reply.ok) throw new StaleFenceError(this.key, seen, Number(reply.payload));
  }
}
