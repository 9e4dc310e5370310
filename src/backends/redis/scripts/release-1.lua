--[[ release-1.lua: release a lock if the owner still holds it, and wake waiters.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
ARGV[1]  owner token
ARGV[2]  wake-up channel of this lock

Returns 1 when this owner held a live lease (now released, waiters woken);
0 when it did not (expired, never held, or lost): nothing else changes, so
a stale release never frees another owner's lock. The fence key stays.
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/publish.lua"

local lock_key, field = KEYS[1], 'h:' .. ARGV[1]
local value = redis.call('HGET', lock_key, field)
if not value then
  return 0
end
redis.call('HDEL', lock_key, field)
drop_if_only_name(lock_key)
local expires = tonumber(string.match(value, '(%S+)$'))
if expires <= now_ms() then
  return 0
end
publish(ARGV[2], 'released')
return 1
