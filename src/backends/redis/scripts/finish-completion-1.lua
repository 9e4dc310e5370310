--[[ finish-completion-1.lua: Redis Cluster, the resource step of
finish-completion-2.lua: end the lifetime if this token holds the claim. The
caller then drops the pending entry (unqueue-pending-2.lua, only while its
score is at most the returned claimUntil, so a newer lifetime's entry stays).

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  claim token

Returns the claim's claimUntil (server ms) when this token held it: the hash
is deleted, or its holders kept for a new lifetime as on one server. Returns
0, changing nothing, when the claim is another's.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

return finish_here(KEYS[1], ARGV[2]) or 0
