--[[ batch-n.lua: several lock operations of one process in one call, run one
after the other, each exactly as its own script would run it. The client
sends one when several operations are due at the same moment (redis/batch.ts):
one command instead of many saves the per-command cost on both sides, which
dominates when many callers share a connection. Single server only: on Redis
Cluster the keys of a batch would span slots.

KEYS     the operations' keys, one operation after the other, as its own
         script takes them
ARGV     per operation: the name of its script, then that script's ARGV

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

-- Each script by name: its function, and how many keys and arguments it takes.
local operations = {
  ['acquire-4'] = { acquire_lock, 4, 13 },
  ['extend-1'] = { extend_lock, 1, 2 },
  ['release-3'] = { release_lock, 3, 3 },
  ['leave-3'] = { leave_lock, 3, 3 },
}

local now = now_ms()
local replies = {}
local key_at, arg_at = 1, 1
while arg_at <= #ARGV do
  local operation = operations[ARGV[arg_at]]
  if operation == nil then
    return redis.error_reply('ERR disref: batch-n.lua cannot run ' .. ARGV[arg_at])
  end
  local run, key_count, arg_count = operation[1], operation[2], operation[3]
  local keys = { unpack(KEYS, key_at, key_at + key_count - 1) }
  local argv = { unpack(ARGV, arg_at + 1, arg_at + arg_count) }
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
  replies[#replies + 1] = reply
  key_at, arg_at = key_at + key_count, arg_at + 1 + arg_count
end
return replies
