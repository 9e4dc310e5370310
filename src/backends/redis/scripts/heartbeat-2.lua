--[[ heartbeat-2.lua: record that a process is alive, and check the namespace
marker so a store that lost its data is noticed even when nobody acquires.

KEYS[1]  process key of this process
KEYS[2]  marker  the namespace marker hash (includes/marker.lua)
ARGV[1]  ttl: ms the process counts as alive without another heartbeat
ARGV[2]  the epoch this process knows ('' for none)
ARGV[3]  a fresh random epoch, used if the marker must be recreated
ARGV[4]  maxTtl: longest lease any process may hold, in ms

Returns the namespace's epoch. The process key holds the server ms of the beat.
]]
--- @include "includes/time.lua"
--- @include "includes/marker.lua"

local now = now_ms()
redis.call('SET', KEYS[1], fmt(now), 'PX', ARGV[1])
local epoch = check_marker(KEYS[2], now, ARGV[2], ARGV[3], tonumber(ARGV[4]))
return epoch
