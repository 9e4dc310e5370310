--[[ reap-1.lua: recovery, part one. Forgets processes whose heartbeat ran out
and queues every resource they held, so that claim-pending-3.lua prunes
them there and completes the resources left without live holders.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
ARGV[1]  the namespace prefix '{ns}:' of the registry's keys
ARGV[2]  most processes to forget in this call

Returns the number of processes forgotten (the caller calls again while it
gets ARGV[2]).

The per-process keys ({ns}:held:<id>, {ns}:process:<id>) and the pending
sets ({ns}:pending:<kind>) are named from the registry's contents, so they
cannot be passed in KEYS; they share the registry's hash tag, so they lie in
its Cluster slot, as BullMQ's scripts derive job keys from a queue prefix.
The resources' own hashes (other slots) are not touched here: a dead holder
is pruned from them by the next script that reads the resource.
]]
--- @include "includes/time.lua"

local processes_key, prefix, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', processes_key, '-inf', fmt(now_ms()), 'LIMIT', 0, limit)
for _, process_id in ipairs(dead) do
  local held_key = prefix .. 'held:' .. process_id
  for _, name in ipairs(redis.call('SMEMBERS', held_key)) do
    -- The kind is the text before the first ':' (kindOf in backend.ts).
    local kind = string.match(name, '^[^:]*')
    redis.call('ZADD', prefix .. 'pending:' .. kind, 'NX', 0, name)
  end
  redis.call('DEL', held_key, prefix .. 'process:' .. process_id)
  redis.call('ZREM', processes_key, process_id)
end
return #dead
