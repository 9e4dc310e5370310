--[[ read-processes-1.lua: the registered processes for `disref status`, unchanged.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
ARGV[1]  the namespace prefix '{ns}:' (for {ns}:process:<id>, same slot)

Returns {now, id1, expiresAt1, beat1, host1, pid1, id2, ...}: times in
server ms; beat, host and pid are '' when unknown. Processes that ran out
are listed until reaped.
]]
--- @include "includes/time.lua"

local reply = { now_ms() }
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local process_id = entries[i]
  local info = redis.call('HMGET', ARGV[1] .. 'process:' .. process_id, 'beat', 'host', 'pid')
  reply[#reply + 1] = process_id
  reply[#reply + 1] = entries[i + 1]
  reply[#reply + 1] = info[1] or ''
  reply[#reply + 1] = info[2] or ''
  reply[#reply + 1] = info[3] or ''
end
return reply
