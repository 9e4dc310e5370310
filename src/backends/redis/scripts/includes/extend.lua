--[[ Fragment: extend_lock(keys, argv, now), the whole of extend-1.lua as a function
(keys and argv are its KEYS and ARGV, documented there), so that batch-n.lua
can run several lock operations in one call. `now` is the server's clock
(now_ms), read once per call: the operations of a batch all run at the moment
it started, which only makes their leases end earlier in the store than the
caller counts (it counts from before it sent them). Included after the fragments
extend-1.lua includes.
]]
local function extend_lock(keys, argv, now)
  local lock_key, field, ttl = keys[1], 'h:' .. argv[1], tonumber(argv[2])
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
end
