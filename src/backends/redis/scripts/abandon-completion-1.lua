--[[ abandon-completion-1.lua: Redis Cluster, the resource step of
abandon-completion-2.lua: drop the claim. The caller then makes the pending
entry due now (queue-pending-1.lua) so that recovery retries it.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  claim token

Returns 1 when this token held the claim, else 0 (nothing changes).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

if abandon_here(KEYS[1], ARGV[2]) then
  return 1
end
return 0
