--[[ Fragment: leave_lock(keys, argv, now), the body of leave-3.lua (KEYS and ARGV
documented there) as a function batch-n.lua can call; `now` as in batch-n.lua.
]]
local function leave_lock(keys, argv, now)
  local lock_key, queue_key, fence_key = keys[1], keys[2], keys[3]
  local owner, channel, fence_ttl = argv[1], argv[2], argv[3]
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
end
