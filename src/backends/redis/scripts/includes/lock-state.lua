--[[ Fragment: reading and writing one lock's state. Included after
includes/time.lua and includes/lock-name.lua by acquire-4.lua, inspect-2.lua.

Layout of a lock (all keys share the hash tag, so one Cluster slot):
  lock   hash, one field per holder or waiter:
           'h:' .. owner -> '<mode> <fence> <expiresAt>'  holder
           'w:' .. owner -> '<mode> <expiresAt> <ttl>'    fair waiter (ttl: the
                            lease length a hand-off grants it)
           'p:' .. owner -> '<expiresAt>'                 pending writer (an
                            unfair exclusive waiter; new readers wait for it)
           'key'         -> the original key, when the key names hash it
         mode is 'exclusive' or 'shared'; times are server ms. The key
         expires with its last entry.
  queue  sorted set of fair waiters: owner -> arrival number (FIFO order).
         Expires with its last waiter.

read_lock(lock_key, queue_key, now) -> state, deleting expired entries:
  state.holders  owner -> { mode, fence (string), expires }
  state.waiting  owner -> { mode, expires, ttl }   (fair waiters)
  state.pending  owner -> expires             (pending writers)
  state.queue    fair waiters' owners in arrival order
  state.pruned   true when an expired holder or fair waiter was removed
save_expiry(state, lock_key, queue_key) makes each key live exactly as long
as its latest entry (call after changing entries and the state tables).
grant_fence(fence_key, now, fence_ttl) -> fence, fence as text: the next
  fence, max(last fence + 1, now * 1000), written to the fence key (kept
  fence_ttl ms) by one SET ... GET in the common case where now * 1000 is the
  larger. Raises an 'ERR disref:' error when the fence key holds anything but
  a whole number below 2^53 (a fence past exact doubles could repeat); a
  string found there is put back (its value; not its expiry), and SET ... GET
  leaves any other type untouched (WRONGTYPE).
]]
local function grant_fence(fence_key, now, fence_ttl)
  local candidate, candidate_text = now * 1000, fmt(now * 1000)
  local stored = redis.call('SET', fence_key, candidate_text, 'PX', fence_ttl, 'GET')
  local last = tonumber(stored or '0')
  if last == nil or last < 0 or last ~= math.floor(last) or last >= 9007199254740991 then
    redis.call('SET', fence_key, stored)
    error({ err = 'ERR disref: fence key ' .. fence_key .. ' holds ' .. string.format('%q', string.sub(stored, 1, 40)) .. ', not a fence' })
  end
  if last < candidate then
    return candidate, candidate_text
  end
  local fence_text = fmt(last + 1)
  redis.call('SET', fence_key, fence_text, 'PX', fence_ttl)
  return last + 1, fence_text
end

local function read_lock(lock_key, queue_key, now)
  local state = { holders = {}, waiting = {}, pending = {}, queue = {}, pruned = false }
  local entries = redis.call('HGETALL', lock_key)
  local dead = {}
  for i = 1, #entries, 2 do
    local field, value = entries[i], entries[i + 1]
    local kind, owner = string.sub(field, 1, 2), string.sub(field, 3)
    if kind == 'h:' then
      local mode, fence, expires = string.match(value, '^(%S+) (%S+) (%S+)$')
      expires = tonumber(expires)
      if expires > now then
        state.holders[owner] = { mode = mode, fence = fence, expires = expires }
      else
        dead[#dead + 1] = field
        state.pruned = true
      end
    elseif kind == 'w:' then
      local mode, expires, ttl = string.match(value, '^(%S+) (%S+) ?(%S*)$')
      expires = tonumber(expires)
      if expires > now then
        state.waiting[owner] = { mode = mode, expires = expires, ttl = tonumber(ttl) }
      else
        dead[#dead + 1] = field
      end
    elseif kind == 'p:' then
      local expires = tonumber(value)
      if expires > now then
        state.pending[owner] = expires
      else
        dead[#dead + 1] = field
      end
    end
  end
  if #dead > 0 then
    redis.call('HDEL', lock_key, unpack(dead))
    drop_if_only_name(lock_key)
  end
  -- The queue gives the order; the hash says who is still waiting.
  local gone = {}
  for _, owner in ipairs(redis.call('ZRANGE', queue_key, 0, -1)) do
    if state.waiting[owner] then
      state.queue[#state.queue + 1] = owner
    else
      gone[#gone + 1] = owner
    end
  end
  if #gone > 0 then
    redis.call('ZREM', queue_key, unpack(gone))
    state.pruned = true
  end
  -- A waiter entry the queue lost (cannot happen unless edited by hand) is dropped.
  if #state.queue ~= 0 or next(state.waiting) ~= nil then
    local queued = {}
    for _, owner in ipairs(state.queue) do
      queued[owner] = true
    end
    for owner in pairs(state.waiting) do
      if not queued[owner] then
        state.waiting[owner] = nil
        redis.call('HDEL', lock_key, 'w:' .. owner)
      end
    end
  end
  return state
end

local function save_expiry(state, lock_key, queue_key)
  local latest, latest_waiter = 0, 0
  for _, holder in pairs(state.holders) do
    latest = math.max(latest, holder.expires)
  end
  for _, waiter in pairs(state.waiting) do
    latest_waiter = math.max(latest_waiter, waiter.expires)
  end
  for _, expires in pairs(state.pending) do
    latest = math.max(latest, expires)
  end
  latest = math.max(latest, latest_waiter)
  if latest > 0 then
    redis.call('PEXPIREAT', lock_key, fmt(latest))
  end
  if latest_waiter > 0 then
    redis.call('PEXPIREAT', queue_key, fmt(latest_waiter))
  end
end
