--[[ acquire-4.lua: try once to take a lock, with a fresh fence on success;
when denied and asked to wait, register as a waiter.

KEYS[1]  lock    hash of holders and waiters (layout: includes/lock-state.lua)
KEYS[2]  queue   sorted set, fair waiters in arrival order
KEYS[3]  fence   string, the last fence handed out for this key; it outlives
                 the lock by fenceTtl so fences never go back
KEYS[4]  marker  the namespace marker hash (includes/marker.lua); on Redis
                 Cluster the marker of the lock's slot (includes/slot-marker.lua)
ARGV[1]  owner token of this acquisition
ARGV[2]  mode: 'exclusive' | 'shared'
ARGV[3]  ttl: lease length in ms
ARGV[4]  fair: '1' respects the queue, '0' may barge
ARGV[5]  wait: '1' registers a waiter when denied, '0' does not
ARGV[6]  waiterTtl: ms a waiter registration lives unless renewed
ARGV[7]  the epoch this process knows ('' for none)
ARGV[8]  a fresh random epoch, used if the marker must be recreated
ARGV[9]  maxTtl: longest lease any process may hold, in ms
ARGV[10] fenceTtl: ms to keep the fence key after a grant
ARGV[11] wake-up channel of this lock
ARGV[12] the key as the caller gave it when the key names hash it, else ''
         (kept in the lock hash's 'key' field for `disref status`)
ARGV[13] '' on a single server; on Redis Cluster, the namespace marker's
         'created' (server ms, '0' when unknown): KEYS[4] is then a slot marker

Returns {1, fence, epoch} when granted (the same fence again when this owner
already holds the lock, with its lease renewed), or {0, retryAfter, epoch}
when denied: retryAfter is the ms until the leases in the way end at the
latest (else until the registrations in the way or the quarantine end), >= 1.

Fences: max(last fence + 1, server ms * 1000), so they keep increasing even
after the store lost the fence key, as long as fewer than 1000 are handed
out per ms. Grants to queued readers publish on the channel so the readers
queued behind them can join. A lock found free with waiters queued is first
handed to them (includes/hand-off.lua).
]]
--- @include "includes/time.lua"
--- @include "includes/marker.lua"
--- @include "includes/slot-marker.lua"
--- @include "includes/lock-name.lua"
--- @include "includes/lock-state.lua"
--- @include "includes/publish.lua"
--- @include "includes/hand-off.lua"

local lock_key, queue_key, fence_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, mode = ARGV[1], ARGV[2]
local ttl, fair, wait, waiter_ttl = tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5] == '1', tonumber(ARGV[6])
local channel, original_key = ARGV[11], ARGV[12]
local now = now_ms()

-- Called whenever an entry is written: the hash of a hashed key says which key it is.
local function remember_name()
  if original_key ~= '' then
    redis.call('HSET', lock_key, 'key', original_key)
  end
end

local epoch, quarantine
if ARGV[13] == '' then
  epoch, quarantine = check_marker(marker_key, now, ARGV[7], ARGV[8], tonumber(ARGV[9]))
else
  epoch, quarantine = check_slot_marker(marker_key, now, ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[13]))
end
if quarantine > now then
  return { 0, math.ceil(quarantine - now), epoch }
end

-- Fast path: no holder, waiter or pending writer at all (the queue expires
-- with its last waiter, and the lock hash lives at least as long), so the
-- lock is granted without reading its state.
if redis.call('EXISTS', lock_key, queue_key) == 0 then
  local fence = next_fence(fence_key, now)
  redis.call('SET', fence_key, fmt(fence), 'PX', ARGV[10])
  if original_key ~= '' then
    redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fmt(fence) .. ' ' .. fmt(now + ttl), 'key', original_key)
  else
    redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fmt(fence) .. ' ' .. fmt(now + ttl))
  end
  redis.call('PEXPIREAT', lock_key, fmt(now + ttl))
  return { 1, fence, epoch }
end

-- Fast denial: a fair exclusive request, new to this lock, behind a live
-- exclusive waiter at the head of the queue, cannot be granted whoever holds
-- the lock; it joins the tail without the whole state being read.
if mode == 'exclusive' and fair and redis.call('EXISTS', lock_key) == 1 then
  local head = redis.call('ZRANGE', queue_key, 0, 0)[1]
  if head and head ~= owner then
    local entries = redis.call('HMGET', lock_key, 'w:' .. head, 'h:' .. owner, 'w:' .. owner, 'p:' .. owner)
    local waiter_mode, waiter_expires = string.match(entries[1] or '', '^(%S+) (%S+)')
    if waiter_mode == 'exclusive' and tonumber(waiter_expires) > now and not (entries[2] or entries[3] or entries[4]) then
      if wait then
        local expires = now + waiter_ttl
        local last = redis.call('ZRANGE', queue_key, -1, -1, 'WITHSCORES')
        redis.call('ZADD', queue_key, (tonumber(last[2]) or 0) + 1, owner)
        redis.call('HSET', lock_key, 'w:' .. owner, mode .. ' ' .. fmt(expires) .. ' ' .. fmt(ttl))
        remember_name()
        -- Each key lives as long as its latest entry: at least as long as this one.
        if redis.call('PTTL', lock_key) < waiter_ttl then
          redis.call('PEXPIRE', lock_key, waiter_ttl)
        end
        if redis.call('PTTL', queue_key) < waiter_ttl then
          redis.call('PEXPIRE', queue_key, waiter_ttl)
        end
      end
      return { 0, math.max(1, redis.call('PTTL', lock_key)), epoch }
    end
  end
end

local state = read_lock(lock_key, queue_key, now)
-- A lock left free (its holder ran out) goes to the head of the queue first.
local handed = hand_off(state, lock_key, queue_key, fence_key, now, ARGV[10], channel)
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
  return { 1, tonumber(mine.fence), epoch }
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
  remember_name()
  local fence = next_fence(fence_key, now)
  redis.call('SET', fence_key, fmt(fence), 'PX', ARGV[10])
  state.holders[owner] = { mode = mode, fence = fmt(fence), expires = now + ttl }
  redis.call('HSET', lock_key, 'h:' .. owner, mode .. ' ' .. fmt(fence) .. ' ' .. fmt(now + ttl))
  save_expiry(state, lock_key, queue_key)
  if was_queued and mode == 'shared' and #state.queue > 1 then
    publish(channel, 'granted')
  end
  return { 1, fence, epoch }
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
    remember_name()
  end
  save_expiry(state, lock_key, queue_key)
end

local bound = holders_until
if bound == 0 then
  bound = blockers_until
end
return { 0, math.max(1, bound - now), epoch }
