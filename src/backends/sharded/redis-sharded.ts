/**
 * `redis-sharded://h1:p1,h2:p2,...`: a {@link ShardedBackend} over one
 * single-server Redis backend per listed server.
 * @module
 */
import {
  describeServerSet,
  redisMembers,
  type RedisServerSet,
} from '../composite/redis-members.js';
import { ShardedBackend } from './sharded-backend.js';

/** The backend of a parsed `redis-sharded://` URL. */
export function createRedisShardedBackend(
  set: RedisServerSet,
  options: { namespace: string; maxTtl: number },
): ShardedBackend {
  return new ShardedBackend({
    name: 'redis-sharded',
    address: describeServerSet(set),
    shards: redisMembers(set, options),
  });
}
