--[[ finish-completion-2.lua: the completion succeeded; end the lifetime.

KEYS[1]  ref      the resource's hash (layout: includes/references.lua)
KEYS[2]  pending  the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  claim token

Returns 1 when this token held the claim: the resource's hash is deleted,
or, if processes referenced the resource while the completion ran, its
holders are kept and start a new lifetime (counters and claim reset).
Returns 0, changing nothing, when the claim is another's.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, pending_key, name = KEYS[1], KEYS[2], ARGV[1]
if not finish_here(ref_key, ARGV[2]) then
  return 0
end
redis.call('ZREM', pending_key, name)
return 1
