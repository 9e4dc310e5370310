--[[ remove-process-3.lua: forget a process that closed.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
KEYS[2]  process    hash of the process: beat, host, pid
KEYS[3]  held       set of the resources the process holds
ARGV[1]  process id

A process that still holds references is not forgotten but declared dead at
once (expiry 0), so that recovery prunes its references and completes what
it held last, as after a crash. Returns 1 when the process was registered,
else 0.
]]
local processes_key, process_key, held_key, process_id = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local known = redis.call('ZSCORE', processes_key, process_id) ~= false
if redis.call('SCARD', held_key) > 0 then
  redis.call('ZADD', processes_key, 0, process_id)
else
  redis.call('ZREM', processes_key, process_id)
  redis.call('DEL', process_key, held_key)
end
if known then
  return 1
end
return 0
