--[[ leave-3.lua: remove a waiter registration (it gave up, timed out or was
aborted); if a hand-off granted it the lock meanwhile, give that back too.
Then hand the lock on (includes/hand-off.lua) or wake the other waiters, who
may now be first.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
KEYS[2]  queue  sorted set, fair waiters in arrival order
KEYS[3]  fence  string, the last fence handed out for this key
ARGV[1]  owner token
ARGV[2]  wake-up channel of this lock
ARGV[3]  fenceTtl: ms to keep the fence key after a grant

Returns 1 when a registration (or a handed-off lease) was removed, else 0.
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/lock-state.lua"
--- @include "includes/publish.lua"
--- @include "includes/hand-off.lua"
--- @include "includes/leave.lua"

return leave_lock(KEYS, ARGV, now_ms())
