--[[ times-modified-1.lua: a resource's modification counter in this lifetime.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)

Returns the count (0 for a resource without keys); raises an 'ERR disref:'
error when the counter holds anything but a whole number.
]]
local stored = redis.call('HGET', KEYS[1], 'modified')
local count = tonumber(stored or '0')
if count == nil or count ~= math.floor(count) then
  error({ err = 'ERR disref: field modified of ' .. KEYS[1] .. ' holds ' .. string.format('%q', string.sub(stored, 1, 40)) .. ', not a count' })
end
return count
