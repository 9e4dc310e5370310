--[[ finish-completion-2.lua: the completion succeeded; end the lifetime.

KEYS[1]  ref      the resource's hash (layout: includes/references.lua)
KEYS[2]  pending  the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  claim token
ARGV[3]  seen: the timesModified the completion was given

Returns 1 when this token held the claim: the resource's hash is deleted,
or, if processes referenced the resource while the completion ran, they
began its next lifetime, which keeps them and what was modified beyond
`seen`; if that lifetime ended too, its completion is queued now.
Returns 0, changing nothing, when the claim is another's.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, pending_key, name = KEYS[1], KEYS[2], ARGV[1]
local claim_until, due = finish_here(ref_key, ARGV[2], tonumber(ARGV[3]))
if not claim_until then
  return 0
end
if due then
  redis.call('ZADD', pending_key, 0, name)
else
  redis.call('ZREM', pending_key, name)
end
return 1
