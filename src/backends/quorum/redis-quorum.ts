/**
 * `redis-quorum://h1:p1,h2:p2,h3:p3`: a {@link QuorumBackend} (Redlock)
 * over one single-server Redis backend per listed server, each with a
 * {@link RedisFenceFloor} for its fence keys.
 * @module
 */
import {
  describeServerSet,
  redisMembers,
  type RedisServerSet,
} from '../composite/redis-members.js';
import { QuorumBackend } from './quorum-backend.js';
import { RedisFenceFloor } from './redis-fence-floor.js';

/** The backend of a parsed `redis-quorum://` URL. */
export function createRedisQuorumBackend(
  set: RedisServerSet,
  options: { namespace: string; maxTtl: number },
): QuorumBackend {
  return new QuorumBackend({
    name: 'redis-quorum',
    address: describeServerSet(set),
    members: redisMembers(set, options).map((member) => ({
      ...member,
      fences: new RedisFenceFloor({ server: member.server, ...options }),
    })),
  });
}
