--[[ add-holder-1.lua: Redis Cluster, the resource step of adding a reference
(add-reference-3.lua does both steps on one server). Run after add-held-2.lua
accepted the process as live and recorded the resource in its held set.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  process id

Returns 1. A resource whose completion is running may gain holders
meanwhile: they start its next lifetime (see finish_here in
includes/references.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

add_holder(KEYS[1], ARGV[1], ARGV[2], now_ms())
return 1
