--[[ extend-claim-2.lua: keep a completion claim alive while its handler runs.

KEYS[1]  ref      the resource's hash (layout: includes/references.lua)
KEYS[2]  pending  the pending completions of the resource's kind
ARGV[1]  resource name
ARGV[2]  claim token
ARGV[3]  ttl: ms from now the claim lives

Returns 1 when extended; 0 when the claim is no longer this token's
(another process claimed the completion after this one lapsed, or it is
finished). A lapsed claim nobody took over is extended: it is still the
only one running.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, pending_key, name = KEYS[1], KEYS[2], ARGV[1]
local claim_until = extend_claim_here(ref_key, ARGV[2], tonumber(ARGV[3]), now_ms())
if not claim_until then
  return 0
end
redis.call('ZADD', pending_key, claim_until, name)
return 1
