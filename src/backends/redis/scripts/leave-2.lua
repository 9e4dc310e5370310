--[[ leave-2.lua: remove a waiter registration (it gave up, timed out or was
aborted), and wake the other waiters, who may now be first.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
KEYS[2]  queue  sorted set, fair waiters in arrival order
ARGV[1]  owner token
ARGV[2]  wake-up channel of this lock

Returns 1 when a registration was removed, 0 when there was none.
]]
--- @include "includes/lock-name.lua"
--- @include "includes/publish.lua"

local owner = ARGV[1]
local removed = redis.call('HDEL', KEYS[1], 'w:' .. owner, 'p:' .. owner)
removed = removed + redis.call('ZREM', KEYS[2], owner)
if removed == 0 then
  return 0
end
drop_if_only_name(KEYS[1])
publish(ARGV[2], 'left')
return 1
