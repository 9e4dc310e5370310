--[[ quarantine-left-1.lua: how much longer a data-loss marker holds grants
back (`disref status`).

KEYS[1]  a namespace marker (includes/marker.lua) or, on Redis Cluster, a
         slot marker (includes/slot-marker.lua)

Returns the ms left of its quarantine ('until', server ms), 0 when it has
none or there is no marker.
]]
--- @include "includes/time.lua"

local until_ms = tonumber(redis.call('HGET', KEYS[1], 'until') or '0') or 0
return math.max(0, until_ms - now_ms())
