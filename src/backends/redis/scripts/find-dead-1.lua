--[[ find-dead-1.lua: Redis Cluster, the registry step of counting references:
which of a resource's holders are dead. Read-only.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
ARGV[1...] process ids

Returns the ids that are not live (unknown, or their heartbeat ran out).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

return dead_among(KEYS[1], args_from(1), now_ms())
