--[[ add-reference-3.lua: register a live process as a holder of a resource.

KEYS[1]  ref        the resource's hash (layout: includes/references.lua)
KEYS[2]  processes  the process registry
KEYS[3]  held       set of the resources this process holds
ARGV[1]  resource name
ARGV[2]  process id

Returns 1 when registered (again, if it already was), 0 when the process is
not live (unknown, or its heartbeat ran out): it must take a new identity.
A resource whose completion is running may gain holders meanwhile: they
start its next lifetime (see finish_here in includes/references.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, processes_key, held_key = KEYS[1], KEYS[2], KEYS[3]
local name, process_id = ARGV[1], ARGV[2]
local now = now_ms()
if not is_live(processes_key, process_id, now) then
  return 0
end
add_holder(ref_key, name, process_id, now)
redis.call('SADD', held_key, name)
return 1
