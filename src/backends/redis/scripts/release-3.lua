--[[ release-3.lua: release a lock if the owner still holds it, and hand it
to the next fair waiters (includes/hand-off.lua) or wake the waiters.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
KEYS[2]  queue  sorted set, fair waiters in arrival order
KEYS[3]  fence  string, the last fence handed out for this key
ARGV[1]  owner token
ARGV[2]  wake-up channel of this lock
ARGV[3]  fenceTtl: ms to keep the fence key after a grant

Returns 1 when this owner held a live lease (now released); 0 when it did
not (expired, never held, or lost): a stale release never frees another
owner's lock (an expired entry is pruned, and the lock handed on if free).
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/lock-state.lua"
--- @include "includes/publish.lua"
--- @include "includes/hand-off.lua"
--- @include "includes/release.lua"

return release_lock(KEYS, ARGV, now_ms())
