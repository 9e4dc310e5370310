--[[ remove-reference-4.lua: remove a process's reference; the caller that
leaves no live holder behind gets the completion claim.

KEYS[1]  ref        the resource's hash (layout: includes/references.lua)
KEYS[2]  processes  the process registry
KEYS[3]  held       set of the resources this process holds
KEYS[4]  pending    the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  process id
ARGV[3]  claimTtl: ms the claim lives unless extended
ARGV[4]  a fresh random claim token

Returns {0} when the process held no reference (pruned as dead, or never
held one); {1} when removed and live holders remain, or another claim on
the completion is live; {1, token, attempt} when removed and this caller
now holds the claim (attempt 1 for the first run of this lifetime).
Dead holders are pruned on the way.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, processes_key, held_key, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, process_id, ttl, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
redis.call('SREM', held_key, name)
if redis.call('HDEL', ref_key, 'p:' .. process_id) == 0 then
  return { 0 }
end
local now = now_ms()
if live_holders(ref_key, processes_key, now) > 0 then
  return { 1 }
end
if claim_is_live(ref_key, now) then
  redis.call('HSET', ref_key, 'completing', '1')
  return { 1 }
end
local claimed = claim(ref_key, pending_key, name, token, ttl, now)
return { 1, claimed[1], claimed[2] }
