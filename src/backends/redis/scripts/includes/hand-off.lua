--[[ Fragment: store-side hand-off. Included after includes/time.lua,
includes/lock-state.lua and includes/publish.lua by the scripts that free a
lock or find it free (release-3, leave-3, acquire-4).

hand_off(state, lock_key, queue_key, fence_key, now, fence_ttl, channel)
grants the lock to the fair waiters at the head of the queue that can have
it now (one writer, or a run of readers), each with a fresh fence and the
lease length it queued with, and publishes 'granted <owner> <fence>' to
each one's process (publish_grant), so the new holder needs no further
round trip. Returns how many were
granted. Waiters registered before waiter entries carried a ttl are left to
take the lock themselves.
]]
-- Owner tokens are '<session>:<random>' (keys.ts grantChannel splits them the
-- same way): owner_parts(owner) -> session, random.
local function owner_parts(owner)
  local session, random = string.match(owner, '^(.*):([^:]*)$')
  return session or owner, random or owner
end

-- A grant goes to the waiter's process only: on the lock's channel suffixed
-- with the owner's session, so the other processes waiting on the lock are
-- not woken for nothing.
local function publish_grant(channel, owner, fence_text)
  local session = owner_parts(owner)
  publish(channel .. ':' .. session, 'granted ' .. owner .. ' ' .. fence_text)
end

local function hand_off(state, lock_key, queue_key, fence_key, now, fence_ttl, channel)
  local granted = 0
  while #state.queue > 0 do
    local head = state.queue[1]
    local waiter = state.waiting[head]
    if waiter == nil or waiter.ttl == nil then
      return granted
    end
    for _, holder in pairs(state.holders) do
      if waiter.mode == 'exclusive' or holder.mode == 'exclusive' then
        return granted
      end
    end
    if waiter.mode == 'shared' and next(state.pending) ~= nil then
      return granted
    end
    table.remove(state.queue, 1)
    state.waiting[head] = nil
    redis.call('HDEL', lock_key, 'w:' .. head)
    redis.call('ZREM', queue_key, head)
    local _, fence_text = grant_fence(fence_key, now, fence_ttl)
    local expires = now + waiter.ttl
    state.holders[head] = { mode = waiter.mode, fence = fence_text, expires = expires }
    redis.call('HSET', lock_key, 'h:' .. head, waiter.mode .. ' ' .. fence_text .. ' ' .. fmt(expires))
    publish_grant(channel, head, fence_text)
    granted = granted + 1
  end
  return granted
end
