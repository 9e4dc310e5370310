--[[ extend-claim-1.lua: Redis Cluster, the resource step of extend-claim-2.lua.
The caller then moves the pending entry to the new expiry (queue-pending-1.lua).

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  claim token
ARGV[3]  ttl: ms from now the claim lives

Returns the new claimUntil (server ms) when extended; 0 when the claim is
no longer this token's.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

return extend_claim_here(KEYS[1], ARGV[2], tonumber(ARGV[3]), now_ms()) or 0
