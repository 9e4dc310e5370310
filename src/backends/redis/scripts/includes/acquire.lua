--[[ Fragment: acquire_lock(keys, argv, now), the body of acquire-4.lua (KEYS and ARGV
documented there) as a function batch-n.lua can call; `now` as in batch-n.lua.
]]
-- The marker as checked by this call of the script, by marker key, then by
-- known epoch: the acquires of one batch (all in one namespace) read it once.
local checked_markers = {}

-- A recreated marker takes the random part of the owner token as its epoch
-- (includes/hand-off.lua owner_parts): random and unique already.
local function checked_marker(marker_key, now, argv)
  local known = argv[7]
  local by_known = checked_markers[marker_key]
  if by_known == nil then
    by_known = {}
    checked_markers[marker_key] = by_known
  end
  local checked = by_known[known]
  if checked == nil then
    local _, candidate = owner_parts(argv[1])
    if argv[12] == '' then
      checked = { check_marker(marker_key, now, known, candidate, tonumber(argv[8])) }
    else
      checked = { check_slot_marker(marker_key, now, known, candidate, tonumber(argv[8]), tonumber(argv[12])) }
    end
    by_known[known] = checked
  end
  return checked[1], checked[2]
end

-- The reply: the epoch is left out when it is the one the caller knows.
local function acquire_reply(granted, value, epoch, known)
  if epoch == known then
    return { granted, value }
  end
  return { granted, value, epoch }
end

-- Called whenever an entry is written: the hash of a hashed key says which key it is.
local function remember_name(lock_key, original_key)
  if original_key ~= '' then
    redis.call('HSET', lock_key, 'key', original_key)
  end
end

local function acquire_lock(keys, argv, now)
  local lock_key, queue_key, fence_key, marker_key = keys[1], keys[2], keys[3], keys[4]
  local owner, mode = argv[1], argv[2]
  local ttl, fair, wait, waiter_ttl = tonumber(argv[3]), argv[4] == '1', argv[5] == '1', tonumber(argv[6])
  local channel, original_key = argv[10], argv[11]

  local epoch, quarantine = checked_marker(marker_key, now, argv)
  if quarantine > now then
    return acquire_reply(-1, math.ceil(quarantine - now), epoch, argv[7])
  end

  -- Fast path: no holder, waiter or pending writer at all (the queue expires
  -- with its last waiter, and the lock hash lives at least as long), so the
  -- lock is granted without reading its state.
  if redis.call('EXISTS', lock_key, queue_key) == 0 then
    local fence, fence_text = grant_fence(fence_key, now, argv[9])
    local expires_text = fmt(now + ttl)
    if original_key ~= '' then
      redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fence_text .. ' ' .. expires_text, 'key', original_key)
    else
      redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fence_text .. ' ' .. expires_text)
    end
    redis.call('PEXPIREAT', lock_key, expires_text)
    return acquire_reply(1, fence, epoch, argv[7])
  end

  -- Fast denial: a fair exclusive request, new to this lock, behind a live
  -- exclusive waiter at the head of the queue, cannot be granted whoever holds
  -- the lock; it joins the tail without the whole state being read. (A queue
  -- without its lock hash cannot happen unless edited by hand: the head's
  -- entry then reads as missing, and the full path below sorts it out.)
  if mode == 'exclusive' and fair then
    local head = redis.call('ZRANGE', queue_key, 0, 0)[1]
    if head and head ~= owner then
      local entries = redis.call('HMGET', lock_key, 'w:' .. head, 'h:' .. owner, 'w:' .. owner, 'p:' .. owner)
      local waiter_mode, waiter_expires = string.match(entries[1] or '', '^(%S+) (%S+)')
      if waiter_mode == 'exclusive' and tonumber(waiter_expires) > now and not (entries[2] or entries[3] or entries[4]) then
        -- The lock hash lives as long as its latest entry: its holder's lease
        -- ends by then, so that is when to retry at the latest.
        local lock_ttl
        if wait then
          local expires = now + waiter_ttl
          local last = redis.call('ZRANGE', queue_key, -1, -1, 'WITHSCORES')
          redis.call('ZADD', queue_key, (tonumber(last[2]) or 0) + 1, owner)
          redis.call('HSET', lock_key, 'w:' .. owner, mode .. ' ' .. fmt(expires) .. ' ' .. fmt(ttl))
          remember_name(lock_key, original_key)
          lock_ttl = live_at_least(lock_key, waiter_ttl)
          live_at_least(queue_key, waiter_ttl)
        else
          lock_ttl = redis.call('PTTL', lock_key)
        end
        return acquire_reply(0, math.max(1, lock_ttl), epoch, argv[7])
      end
    end
  end

  local state = read_lock(lock_key, queue_key, now)
  -- A lock left free (its holder ran out) goes to the head of the queue first.
  local handed = hand_off(state, lock_key, queue_key, fence_key, now, argv[9], channel)
  if state.pruned and handed == 0 then
    publish(channel, 'expired')
  end

  local function conflicts(a, b)
    return a == 'exclusive' or b == 'exclusive'
  end

  -- The same acquisition asked twice (a retried call): keep one lease.
  local mine = state.holders[owner]
  if mine then
    mine.expires = now + ttl
    redis.call('HSET', lock_key, 'h:' .. owner, mine.mode .. ' ' .. mine.fence .. ' ' .. fmt(mine.expires))
    save_expiry(state, lock_key, queue_key)
    return acquire_reply(1, tonumber(mine.fence), epoch, argv[7])
  end

  local grantable, holders_until, blockers_until = true, 0, 0
  for _, holder in pairs(state.holders) do
    holders_until = math.max(holders_until, holder.expires)
    if conflicts(mode, holder.mode) then
      grantable = false
    end
  end
  if fair then
    -- Grant only if nobody ahead in the queue would conflict with us.
    for _, waiter in ipairs(state.queue) do
      if waiter == owner then
        break
      end
      local ahead = state.waiting[waiter]
      if conflicts(mode, ahead.mode) then
        grantable = false
        blockers_until = math.max(blockers_until, ahead.expires)
      end
    end
  end
  if mode == 'shared' then
    for writer, expires in pairs(state.pending) do
      if writer ~= owner then
        grantable = false
        blockers_until = math.max(blockers_until, expires)
      end
    end
  end

  if grantable then
    local was_queued = state.waiting[owner] ~= nil
    state.waiting[owner] = nil
    state.pending[owner] = nil
    redis.call('HDEL', lock_key, 'w:' .. owner, 'p:' .. owner)
    redis.call('ZREM', queue_key, owner)
    remember_name(lock_key, original_key)
    local fence, fence_text = grant_fence(fence_key, now, argv[9])
    state.holders[owner] = { mode = mode, fence = fence_text, expires = now + ttl }
    redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fence_text .. ' ' .. fmt(now + ttl))
    save_expiry(state, lock_key, queue_key)
    if was_queued and mode == 'shared' and #state.queue > 1 then
      publish(channel, 'granted')
    end
    return acquire_reply(1, fence, epoch, argv[7])
  end

  if wait then
    local expires = now + waiter_ttl
    if fair then
      local queued = state.waiting[owner]
      if queued then
        -- Renewed in place: it keeps its turn and the mode it queued with.
        queued.expires = expires
        redis.call('HSET', lock_key, 'w:' .. owner, queued.mode .. ' ' .. fmt(expires) .. ' ' .. fmt(ttl))
      else
        local last = redis.call('ZRANGE', queue_key, -1, -1, 'WITHSCORES')
        redis.call('ZADD', queue_key, (tonumber(last[2]) or 0) + 1, owner)
        state.waiting[owner] = { mode = mode, expires = expires, ttl = ttl }
        redis.call('HSET', lock_key, 'w:' .. owner, mode .. ' ' .. fmt(expires) .. ' ' .. fmt(ttl))
      end
    elseif mode == 'exclusive' then
      state.pending[owner] = expires
      redis.call('HSET', lock_key, 'p:' .. owner, fmt(expires))
    end
    if state.waiting[owner] or state.pending[owner] then
      remember_name(lock_key, original_key)
    end
    save_expiry(state, lock_key, queue_key)
  end

  local bound = holders_until
  if bound == 0 then
    bound = blockers_until
  end
  return acquire_reply(0, math.max(1, bound - now), epoch, argv[7])
end
