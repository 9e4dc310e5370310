--[[ increment-times-modified-1.lua: add to a resource's modification counter.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  by: a positive integer

Returns the new count.
]]
redis.call('HSETNX', KEYS[1], 'resource', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'modified', ARGV[2])
