--[[ Fragment: extend_lock(keys, argv, now), the body of extend-1.lua (KEYS and ARGV
documented there) as a function batch-n.lua can call; `now` as in batch-n.lua.
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
  live_at_least(lock_key, ttl)
  return 1
end
