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

local lock_key, queue_key, fence_key = KEYS[1], KEYS[2], KEYS[3]
local owner, channel, fence_ttl = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local state = read_lock(lock_key, queue_key, now)
local removed = 0
if state.holders[owner] then
  state.holders[owner] = nil
  removed = 1
end
if state.waiting[owner] then
  state.waiting[owner] = nil
  for i, queued in ipairs(state.queue) do
    if queued == owner then
      table.remove(state.queue, i)
      break
    end
  end
  removed = 1
end
if state.pending[owner] then
  state.pending[owner] = nil
  removed = 1
end
redis.call('HDEL', lock_key, 'h:' .. owner, 'w:' .. owner, 'p:' .. owner)
redis.call('ZREM', queue_key, owner)
if removed == 0 then
  return 0
end
if hand_off(state, lock_key, queue_key, fence_key, now, fence_ttl, channel) == 0 then
  publish(channel, 'left')
end
save_expiry(state, lock_key, queue_key)
drop_if_only_name(lock_key)
return 1
