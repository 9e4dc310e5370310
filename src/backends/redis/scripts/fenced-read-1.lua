--[[
  fenced-read-1: reads a fenced resource's value for a holder, and records
  the holder's fence, so that a holder with an older fence can neither read
  (and then write back a value computed from stale state) nor write any more.

  KEYS[1]  the resource: a hash with fields `value` and `fence`
  ARGV[1]  the reader's fence (decimal integer)

  Returns {1, value or false} when allowed, {0, highest} when refused.
]]
local fence = tonumber(ARGV[1])
local highest = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if fence < highest then
  return {0, tostring(highest)}
end
if fence > highest then
  redis.call('HSET', KEYS[1], 'fence', ARGV[1])
end
return {1, redis.call('HGET', KEYS[1], 'value')}
