--[[ abandon-completion-2.lua: the completion failed (or has no handler in this
process); drop the claim so that recovery retries it at once.

KEYS[1]  ref      the resource's hash (layout: includes/references.lua)
KEYS[2]  pending  the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  claim token

Returns 1 when this token held the claim, else 0 (nothing changes).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, pending_key, name = KEYS[1], KEYS[2], ARGV[1]
if not abandon_here(ref_key, ARGV[2]) then
  return 0
end
redis.call('ZADD', pending_key, 0, name)
return 1
