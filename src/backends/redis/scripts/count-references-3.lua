--[[ count-references-3.lua: the live holders of a resource, pruning dead ones.

KEYS[1]  ref        the resource's hash (layout: includes/references.lua)
KEYS[2]  processes  the process registry
KEYS[3]  pending    the pending completions of the resource's kind
ARGV[1]  resource name

Returns the number of live holders. A resource this prune leaves without
live holders is marked completing and queued, so recovery completes it.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, processes_key, pending_key, name = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
if redis.call('EXISTS', ref_key) == 0 then
  return 0
end
local now = now_ms()
local live = live_holders(ref_key, processes_key, now)
if live == 0 then
  settle(ref_key, pending_key, name, now)
end
return live
