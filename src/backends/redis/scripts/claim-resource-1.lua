--[[ claim-resource-1.lua: Redis Cluster, the resource step of claiming a
completion (claim-pending-3.lua on one server): prune the holders the
registry reported dead, then claim if no holder and no live claim is left.
Used by recovery, and by a dereference whose remaining holders all died.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  a fresh random claim token
ARGV[3]  claimTtl: ms the claim lives unless extended
ARGV[4...] ids of holders the registry reported dead

Returns
  {'gone'}                             no such resource (completed already)
  {'busy', claimUntil}                 a live claim runs the completion
  {'held', id1, id2, ...}              holders remain (not reported dead)
  {'claimed', token, attempt, claimUntil}
The caller updates the pending set accordingly (queue-pending-1.lua,
unqueue-pending-2.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key = KEYS[1]
if redis.call('EXISTS', ref_key) == 0 then
  return { 'gone' }
end
drop_holders(ref_key, args_from(4))
local now = now_ms()
local live, claim_until = claim_is_live(ref_key, now)
if live then
  return { 'busy', fmt(claim_until) }
end
local holders = holder_ids(ref_key)
if #holders > 0 then
  local reply = { 'held' }
  for _, id in ipairs(holders) do
    reply[#reply + 1] = id
  end
  return reply
end
local token, attempt, until_ms = claim_here(ref_key, ARGV[2], tonumber(ARGV[3]), now)
return { 'claimed', token, attempt, until_ms }
