--[[ claim-pending-3.lua: recovery, part three. Claims the completion of one
queued resource if nobody holds it any more and no live claim runs it.

KEYS[1]  ref        the resource's hash (layout: includes/references.lua)
KEYS[2]  processes  the process registry
KEYS[3]  pending    the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  a fresh random claim token
ARGV[3]  claimTtl: ms the claim lives unless extended

Returns {token, attempt} when claimed, else 0: the resource is gone
(completed meanwhile), its completion is claimed by a live claim, or live
holders remain (their last dereference, or reaping them, queues it again).
Dead holders are pruned on the way.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, processes_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local name, token, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', ref_key) == 0 then
  redis.call('ZREM', pending_key, name)
  return 0
end
local now = now_ms()
local live, claim_until = claim_is_live(ref_key, now)
if live then
  -- Due again when the running claim lapses.
  redis.call('ZADD', pending_key, fmt(claim_until), name)
  return 0
end
if live_holders(ref_key, processes_key, now) > 0 then
  redis.call('ZREM', pending_key, name)
  return 0
end
return claim(ref_key, pending_key, name, token, ttl, now)
