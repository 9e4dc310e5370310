--[[ remove-holder-1.lua: Redis Cluster, the resource step of removing a
reference (remove-reference-4.lua does it all on one server). The caller
then runs drop-held-3.lua in the registry's slot, which forgets the resource
in this process's held set, queues a claimed completion, and says which of
the remaining holders are dead; if all are, it claims with
claim-resource-1.lua, passing their ids.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  process id
ARGV[3]  claimTtl: ms the claim lives unless extended
ARGV[4]  a fresh random claim token

Returns
  {0}                                  the process held no reference
  {1, 'held', id1, id2, ...}           removed; these holders remain (their
                                       liveness is for the registry to say)
  {1, 'busy'}                          removed; nobody holds it, and a live
                                       claim already runs the completion
  {1, 'claimed', token, attempt, claimUntil}
                                       removed, and this caller now holds
                                       the completion claim
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, process_id = KEYS[1], ARGV[2]
if redis.call('HDEL', ref_key, 'p:' .. process_id) == 0 then
  return { 0 }
end
local holders = holder_ids(ref_key)
if #holders > 0 then
  local reply = { 1, 'held' }
  for _, id in ipairs(holders) do
    reply[#reply + 1] = id
  end
  return reply
end
local now = now_ms()
if claim_is_live(ref_key, now) then
  redis.call('HSET', ref_key, 'completing', '1')
  return { 1, 'busy' }
end
local token, attempt, claim_until = claim_here(ref_key, ARGV[4], tonumber(ARGV[3]), now)
return { 1, 'claimed', token, attempt, claim_until }
