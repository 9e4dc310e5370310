--[[ unqueue-pending-2.lua: Redis Cluster, the registry step that drops a
resource from the pending set once the resource step found nothing to do:
it was completed (finish-completion-1.lua), it is gone, or holders remain
(claim-resource-1.lua). With holder ids, their liveness is checked in the
same step, so a holder that dies afterwards is queued again by the reaper.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
KEYS[2]  pending    the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  drop the entry only while its score is at most this (server ms),
         so an entry a newer claim or lifetime wrote stays; '' means now
ARGV[3...] ids of the holders the resource step found, if any

Returns {} when the entry was dropped (or there was none to drop), or the
ids when every one of them is dead: nothing is dropped, and the caller
prunes them and claims (claim-resource-1.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local name = ARGV[1]
local now = now_ms()
local holders = args_from(3)
if #holders > 0 then
  local dead = dead_among(KEYS[1], holders, now)
  if #dead == #holders then
    return dead
  end
end
local limit = now
if ARGV[2] ~= '' then
  limit = tonumber(ARGV[2])
end
local score = redis.call('ZSCORE', KEYS[2], name)
if score and tonumber(score) <= limit then
  redis.call('ZREM', KEYS[2], name)
end
return {}
