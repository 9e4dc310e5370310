--[[ prune-holders-1.lua: Redis Cluster, the resource step of counting
references (count-references-3.lua on one server): prune the holders the
registry reported dead (find-dead-1.lua) and count the rest.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2...] ids of holders the registry reported dead

Returns {holders, queue}: the holders left; queue is 1 when none is left
and no live claim runs the completion, so the caller queues the resource
for recovery (queue-pending-1.lua). The resource is then marked completing.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key = KEYS[1]
if redis.call('EXISTS', ref_key) == 0 then
  return { 0, 0 }
end
drop_holders(ref_key, args_from(2))
local holders = #holder_ids(ref_key)
if holders > 0 then
  return { holders, 0 }
end
redis.call('HSET', ref_key, 'completing', '1')
if claim_is_live(ref_key, now_ms()) then
  return { 0, 0 }
end
return { 0, 1 }
