--[[ extend-1.lua: reset a lease to ttl ms from now, if the owner still holds it.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
ARGV[1]  owner token
ARGV[2]  ttl: new lease length in ms

Returns 1 when extended; 0 when the owner no longer holds the lock (expired,
released, taken over, or the store lost it).
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/extend.lua"

return extend_lock(KEYS, ARGV, now_ms())
