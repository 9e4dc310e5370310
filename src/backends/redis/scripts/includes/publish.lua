--[[ Fragment: wake-up messages. Included by the scripts that wake waiters
(acquire-4, release-3, leave-3, inspect-2, and includes/hand-off.lua).

publish(channel, message) sends with PUBLISH. On Redis Cluster 7 or later,
scripts.ts loads includes/publish-sharded.lua in its place (SPUBLISH), so a
lock's wake-ups stay on the node that owns its slot (the channel shares the
lock's hash tag) instead of being broadcast to every node.
]]
local function publish(channel, message)
  redis.call('PUBLISH', channel, message)
end
