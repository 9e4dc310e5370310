--[[ add-reference-3.lua: register a live process as a holder of a resource.

KEYS[1]  ref        the resource's hash (layout: includes/references.lua)
KEYS[2]  processes  the process registry
KEYS[3]  held       set of the resources this process holds
ARGV[1]  resource name
ARGV[2]  process id

Returns 1 when registered (again, if it already was), 0 when the process is
not live (unknown, or its heartbeat ran out): it must take a new identity.
A resource whose completion is running may gain holders meanwhile: they
start its next lifetime (see finish-completion-2.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local ref_key, processes_key, held_key = KEYS[1], KEYS[2], KEYS[3]
local name, process_id = ARGV[1], ARGV[2]
local now = now_ms()
if not is_live(processes_key, process_id, now) then
  return 0
end
redis.call('HSET', ref_key, 'resource', name, 'p:' .. process_id, fmt(now))
redis.call('SADD', held_key, name)
return 1
