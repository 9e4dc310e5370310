--[[ batch-n.lua: several lock operations of one process in one call, run one
after the other, each as its own script would run it, except that they share
one reading of the server's clock and of the namespace marker. The client
sends one when several operations are due at the same moment (redis/batch.ts):
one command instead of many saves the per-command cost on both sides, which
dominates when many callers share a connection. Single server only: on Redis
Cluster the keys of a batch would span slots.

KEYS     the operations' keys, one operation after the other, as its own
         script takes them
ARGV[i]  operation i: the name of its script, then that script's ARGV, each
         followed by a newline (no argument holds one: keys and tokens have
         no control characters). One argument per operation, not one per
         value, because the client's cost grows with the number of arguments.

Each operation is the function its own script calls (includes/acquire.lua,
extend.lua, release.lua, leave.lua), given `now`, the server's clock read once
per call: the operations of a batch all run at the moment it started, which
only makes their leases end earlier in the store than their callers count
(each counts from before it sent its operation).

Returns one entry per operation: its script's reply, or the error it raised
as a string (none of these scripts replies with a string), so one failing
operation (a key holding a value disref did not write) fails alone.
]]
--- @include "includes/time.lua"
--- @include "includes/marker.lua"
--- @include "includes/slot-marker.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/lock-state.lua"
--- @include "includes/publish.lua"
--- @include "includes/hand-off.lua"
--- @include "includes/acquire.lua"
--- @include "includes/extend.lua"
--- @include "includes/release.lua"
--- @include "includes/leave.lua"

-- Each script by name: its function, how many keys it takes, and a pattern
-- that captures its arguments (one match beats splitting field by field).
local function arguments(count)
  return '^[^\n]*\n' .. string.rep('([^\n]*)\n', count) .. '$'
end
local operations = {
  ['acquire-4'] = { acquire_lock, 4, arguments(12) },
  ['extend-1'] = { extend_lock, 1, arguments(2) },
  ['release-3'] = { release_lock, 3, arguments(3) },
  ['leave-3'] = { leave_lock, 3, arguments(3) },
}

local now = now_ms()
local replies = {}
local key_at = 1
for i = 1, #ARGV do
  local operation = operations[string.match(ARGV[i], '^([^\n]*)\n')]
  local argv = operation and { string.match(ARGV[i], operation[3]) }
  if not argv or #argv == 0 then
    return redis.error_reply('ERR disref: batch-n.lua cannot run ' .. string.format('%q', string.sub(ARGV[i], 1, 60)))
  end
  local run, key_count = operation[1], operation[2]
  local keys = { unpack(KEYS, key_at, key_at + key_count - 1) }
  local ok, reply = pcall(run, keys, argv, now)
  if not ok then
    -- error({ err = ... }) raises a table; redis.call and Lua itself raise a
    -- string, with an error code (WRONGTYPE ...) or without (user_script:12: ...).
    if type(reply) == 'table' then
      reply = tostring(reply.err)
    elseif not string.match(tostring(reply), '^%u+ ') then
      reply = 'ERR ' .. tostring(reply)
    end
  end
  replies[i] = reply
  key_at = key_at + key_count
end
return replies
