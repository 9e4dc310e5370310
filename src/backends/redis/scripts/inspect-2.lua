--[[ inspect-2.lua: a lock's holders and waiter count, dropping expired entries.

KEYS[1]  lock   hash of holders and waiters (layout: includes/lock-state.lua)
KEYS[2]  queue  sorted set, fair waiters in arrival order
ARGV[1]  wake-up channel of this lock (woken when an expired holder is dropped)

Returns nil when nobody holds the lock and no fair waiter is queued; else
{waiters, key, owner1, mode1, fence1, ttlLeft1, owner2, ...}: waiters counts
fair waiters and pending writers; key is the original key when the key names
hash it (else ''); ttlLeft is the ms left on that lease.
]]
--- @include "includes/time.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/lock-state.lua"
--- @include "includes/publish.lua"

local now = now_ms()
local state = read_lock(KEYS[1], KEYS[2], now)
if state.pruned then
  publish(ARGV[1], 'expired')
end
local reply = { #state.queue, redis.call('HGET', KEYS[1], 'key') or '' }
for _ in pairs(state.pending) do
  reply[1] = reply[1] + 1
end
for owner, holder in pairs(state.holders) do
  reply[#reply + 1] = owner
  reply[#reply + 1] = holder.mode
  reply[#reply + 1] = holder.fence
  reply[#reply + 1] = math.max(0, holder.expires - now)
end
if #reply == 2 and #state.queue == 0 then
  return nil
end
return reply
