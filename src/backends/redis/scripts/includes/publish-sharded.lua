--[[ Fragment: wake-up messages by sharded pub/sub (Redis 7+), loaded by
scripts.ts in place of includes/publish.lua for Redis Cluster. SPUBLISH
delivers to the subscribers of the node that owns the channel's slot, which
is the lock's slot (the channel shares its hash tag), so it is allowed in a
script that touches that lock's keys.
]]
local function publish(channel, message)
  redis.call('SPUBLISH', channel, message)
end
