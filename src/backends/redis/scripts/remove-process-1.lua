--[[ remove-process-1.lua: forget a process that closed.

KEYS[1]  process key of the process

Returns 1 when the key existed, else 0.
]]
return redis.call('DEL', KEYS[1])
