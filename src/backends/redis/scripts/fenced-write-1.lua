--[[
  fenced-write-1: writes a fenced resource's value if the writer's fence is
  not older than any fence the resource has seen (by a write or a checked read).

  KEYS[1]  the resource: a hash with fields `value` and `fence`
  ARGV[1]  the writer's fence (decimal integer)
  ARGV[2]  the new value

  Returns {1, fence} when written, {0, highest} when refused (stale fence).
]]
local fence = tonumber(ARGV[1])
local highest = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence < highest then
  return {0, tostring(highest)}
end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'fence', ARGV[1])
return {1, ARGV[1]}
