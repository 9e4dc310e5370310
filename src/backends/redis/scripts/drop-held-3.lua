--[[ drop-held-3.lua: Redis Cluster, the registry step of removing a
reference, run after remove-holder-1.lua: forget the resource in this
process's held set (only now, so a reaper still finds it if the process died
after the resource step), queue a completion the resource step claimed, and
say which of the remaining holders are dead.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
KEYS[2]  held       set of the resources this process holds
KEYS[3]  pending    the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  claimUntil of a claim just taken (the entry comes due when it
         lapses, so a dead claimant's completion is retried), or ''
ARGV[3...] ids of the holders the resource step found

Returns the ids among ARGV[3...] that are not live.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local name, claim_until = ARGV[1], ARGV[2]
redis.call('SREM', KEYS[2], name)
if claim_until ~= '' then
  redis.call('ZADD', KEYS[3], claim_until, name)
end
return dead_among(KEYS[1], args_from(3), now_ms())
