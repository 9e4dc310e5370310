--[[ extend-1.lua: reset a lease to ttl ms from now, if the owner still holds it.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
ARGV[1]  owner token
ARGV[2]  ttl: new lease length in ms

Returns 1 when extended; 0 when the owner no longer holds the lock (expired,
released, taken over, or the store lost it).
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"

local lock_key, field, ttl = KEYS[1], 'h:' .. ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local value = redis.call('HGET', lock_key, field)
if not value then
  return 0
end
local mode, fence, expires = string.match(value, '^(%S+) (%S+) (%S+)$')
if tonumber(expires) <= now then
  redis.call('HDEL', lock_key, field)
  drop_if_only_name(lock_key)
  return 0
end
redis.call('HSET', lock_key, field, mode .. ' ' .. fence .. ' ' .. fmt(now + ttl))
if redis.call('PTTL', lock_key) < ttl then
  redis.call('PEXPIRE', lock_key, ttl)
end
return 1
