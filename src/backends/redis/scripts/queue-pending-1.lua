--[[ queue-pending-1.lua: Redis Cluster, the registry half of the steps that
queue a resource for completion (the single-server scripts do it in the same
script as the resource step).

KEYS[1]  pending  the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  score: server ms from which it may be claimed (0: now; a running
         claim: when it lapses)
ARGV[3]  'NX' to keep an entry already there (it is due at least as soon),
         '' to set the score

Returns 1.
]]
if ARGV[3] == 'NX' then
  redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
