--[[ Fragment: release_lock(keys, argv, now), the body of release-3.lua (KEYS and ARGV
documented there) as a function batch-n.lua can call; `now` as in batch-n.lua.
]]
local function release_lock(keys, argv, now)
  local lock_key, queue_key, fence_key = keys[1], keys[2], keys[3]
  local owner, channel, fence_ttl = argv[1], argv[2], argv[3]
  -- Fast path: this owner's live lease is the lock's only entry, so nobody
  -- waits in the store; the lock is deleted without reading its whole state.
  local mine = redis.call('HGET', lock_key, 'h:' .. owner)
  if mine and redis.call('HLEN', lock_key) == 1 and tonumber(string.match(mine, '(%d+)$')) > now then
    redis.call('DEL', lock_key, queue_key)
    publish(channel, 'released')
    return 1
  end
  -- Fast hand-off: a live exclusive holder (so no other live holder) releases
  -- to a live exclusive waiter at the head of the queue; the rest of the state
  -- is neither read nor needed. Anything else takes the full path below.
  if mine then
    local mode, _, expires = string.match(mine, '^(%S+) (%S+) (%S+)$')
    if mode == 'exclusive' and tonumber(expires) > now then
      local head = redis.call('ZRANGE', queue_key, 0, 0)[1]
      local entry = head and redis.call('HGET', lock_key, 'w:' .. head)
      if entry then
        local waiter_mode, waiter_expires, waiter_ttl = string.match(entry, '^(%S+) (%S+) ?(%S*)$')
        waiter_ttl = tonumber(waiter_ttl)
        if waiter_mode == 'exclusive' and tonumber(waiter_expires) > now and waiter_ttl then
          redis.call('HDEL', lock_key, 'h:' .. owner, 'w:' .. head)
          redis.call('ZREM', queue_key, head)
          local _, fence_text = grant_fence(fence_key, now, fence_ttl)
          redis.call('HSET', lock_key, 'h:' .. head, 'exclusive ' .. fence_text .. ' ' .. fmt(now + waiter_ttl))
          -- The hash lives as long as its latest entry: at least as long as the new lease.
          live_at_least(lock_key, waiter_ttl)
          publish_grant(channel, head, fence_text)
          return 1
        end
      end
    end
  end
  local state = read_lock(lock_key, queue_key, now)
  local released = 0
  if state.holders[owner] then
    state.holders[owner] = nil
    redis.call('HDEL', lock_key, 'h:' .. owner)
    released = 1
  end
  if released == 1 or state.pruned then
    if hand_off(state, lock_key, queue_key, fence_key, now, fence_ttl, channel) == 0 then
      publish(channel, released == 1 and 'released' or 'expired')
    end
    save_expiry(state, lock_key, queue_key)
    drop_if_only_name(lock_key)
  end
  return released
end
