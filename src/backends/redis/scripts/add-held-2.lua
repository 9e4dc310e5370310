--[[ add-held-2.lua: Redis Cluster, the registry step of adding a reference,
run before add-holder-1.lua: if the process dies after this step, the reaper
finds the resource in its held set and queues it.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
KEYS[2]  held       set of the resources this process holds
ARGV[1]  process id
ARGV[2]  resource name

Returns 1 when recorded, 0 when the process is not live (unknown, or its
heartbeat ran out): it must take a new identity, and nothing is written.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

if not is_live(KEYS[1], ARGV[1], now_ms()) then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
