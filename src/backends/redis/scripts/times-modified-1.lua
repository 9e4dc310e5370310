--[[ times-modified-1.lua: a resource's modification counter in this lifetime.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)

Returns the count (0 for a resource without keys).
]]
return tonumber(redis.call('HGET', KEYS[1], 'modified') or '0')
