--[[ Fragment: server time and number formatting, included by the scripts
that need them (see scripts.ts: a line `--- @include "includes/time.lua"`).

now_ms()  -> the Redis server's clock in whole ms (TIME). Every expiry
             decision uses it, never a client's clock.
fmt(n)    -> n as a plain integer string. tostring() would print fences
             (~1.7e15) in exponent form and lose digits.
live_at_least(key, ms) -> the key's time to live in ms, after raising it to
             ms if it was shorter (a key lives as long as its latest entry).
]]
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function fmt(n)
  return string.format('%.0f', n)
end

local function live_at_least(key, ms)
  local ttl = redis.call('PTTL', key)
  if ttl < ms then
    redis.call('PEXPIRE', key, ms)
    return ms
  end
  return ttl
end
