--[[ Fragment: reference counting state. Included after includes/time.lua by
the reference scripts (add-reference-3, remove-reference-4,
count-references-3, claim-pending-3, ...).

Layout (names in keys.ts):
  {ns}:processes      sorted set: process id -> server ms its heartbeat runs
                      out. A process is live while that is in the future. One
                      that ran out stays (as dead) until reap-1 forgets it; a
                      heartbeat never revives it, so pruning is never undone.
  {ns}:process:<id>   hash: beat (server ms of the last heartbeat), host, pid
  {ns}:held:<id>      set: names of the resources the process holds
  {ns}:pending:<kind> sorted set: resources of that kind whose completion is
                      due, by the server ms from which it may be claimed
                      (0 = now, else when the running claim lapses)
  ns:{r:name}:ref     hash, one per resource (its own hash tag):
                        resource    the name as the caller gave it
                        p:<id>      a holder (value: server ms it was added)
                        modified    timesModified of this lifetime
                        attempts    completion runs so far in this lifetime
                        completing  '1' once no live holder is left
                        claim, claimUntil  the completion claim: token, and
                                    the server ms it lapses (live while later)
                        reopened    '1' once referenced since the claim: the
                                    next lifetime began while it ran

Redis Cluster: a resource script reads liveness from {ns}:processes (and
writes {ns}:held:<id>, {ns}:pending:<kind>), which lie in another slot than
the resource's hash. That is fine on one server (every key is passed in
KEYS), but on a Cluster each operation is split (redis-cluster-references.ts)
into resource steps (scripts with the resource's hash as their only key) and
registry steps (keys of the {ns} slot): the registry says which holders are
dead (by that node's clock), and the resource script prunes only those ids.
Death is permanent here, so a holder reported dead can be pruned later
without risk; one reported live that dies meanwhile is merely counted once
more and later reaped. Adding a reference writes {ns}:held:<id> (checking
liveness there) before the resource's hash, and removing one drops it from
{ns}:held:<id> only after the resource's hash, so that a reaper always finds
the resource to queue if the process dies in between.

is_live(processes_key, id, now) -> whether the process is registered and
  its heartbeat has not run out.
dead_among(processes_key, ids, now) -> the ids that are not live.
args_from(i) -> ARGV[i], ARGV[i + 1], ... as a table (lists of process ids).
live_holders(ref_key, processes_key, now) -> number of live holders, after
  deleting the fields of dead ones (not in the registry, or ran out).
settle(ref_key, pending_key, name, now) marks a resource without live
  holders as completing and queues it, unless a live claim already runs it.
claim(ref_key, pending_key, name, token, ttl, now) -> {token, attempt}.

Resource-side steps (touch only the resource's hash; used by the scripts
above and, on their own, by the Cluster scripts):
add_holder(ref_key, name, process_id, now) records a holder (marking the
  resource reopened when a claim is out).
holder_ids(ref_key) -> the process ids of the holders, dead ones included.
drop_holders(ref_key, ids) deletes the holder fields of those processes.
claim_here(ref_key, token, ttl, now) -> token, attempt, claimUntil: takes
  the completion claim (a new attempt of this lifetime).
extend_claim_here(ref_key, token, ttl, now) -> claimUntil, or nil when the
  claim is not this token's.
finish_here(ref_key, token, seen) -> claimUntil, due; or nil when the claim
  is not this token's. Ends the lifetime the claim covered: deletes the hash,
  unless it was referenced meanwhile (reopened): that next lifetime keeps its
  holders and what was modified beyond `seen` (the count its completion was
  given); due is true when it ended too (no holder left), so its completion
  must be queued now.
abandon_here(ref_key, token) -> true when this token held the claim, which
  is dropped.
]]
local function is_live(processes_key, process_id, now)
  local expires = redis.call('ZSCORE', processes_key, process_id)
  return expires ~= false and tonumber(expires) > now
end

local function dead_among(processes_key, ids, now)
  local dead = {}
  for _, id in ipairs(ids) do
    if not is_live(processes_key, id, now) then
      dead[#dead + 1] = id
    end
  end
  return dead
end

local function args_from(first)
  local values = {}
  for i = first, #ARGV do
    values[#values + 1] = ARGV[i]
  end
  return values
end

local function live_holders(ref_key, processes_key, now)
  local fields = redis.call('HKEYS', ref_key)
  local live, dead = 0, {}
  for _, field in ipairs(fields) do
    if string.sub(field, 1, 2) == 'p:' then
      if is_live(processes_key, string.sub(field, 3), now) then
        live = live + 1
      else
        dead[#dead + 1] = field
      end
    end
  end
  if #dead > 0 then
    redis.call('HDEL', ref_key, unpack(dead))
  end
  return live
end

local function claim_is_live(ref_key, now)
  local claim = redis.call('HMGET', ref_key, 'claim', 'claimUntil')
  return claim[1] ~= false and tonumber(claim[2]) > now, tonumber(claim[2])
end

local function settle(ref_key, pending_key, name, now)
  redis.call('HSET', ref_key, 'completing', '1')
  if not claim_is_live(ref_key, now) then
    -- NX: an entry already there is due at least as soon.
    redis.call('ZADD', pending_key, 'NX', 0, name)
  end
end

local function holder_ids(ref_key)
  local ids = {}
  for _, field in ipairs(redis.call('HKEYS', ref_key)) do
    if string.sub(field, 1, 2) == 'p:' then
      ids[#ids + 1] = string.sub(field, 3)
    end
  end
  return ids
end

local function drop_holders(ref_key, ids)
  local fields = {}
  for _, id in ipairs(ids) do
    fields[#fields + 1] = 'p:' .. id
  end
  if #fields > 0 then
    redis.call('HDEL', ref_key, unpack(fields))
  end
end

local function add_holder(ref_key, name, process_id, now)
  if redis.call('HEXISTS', ref_key, 'claim') == 1 then
    redis.call('HSET', ref_key, 'resource', name, 'p:' .. process_id, fmt(now), 'reopened', '1')
  else
    redis.call('HSET', ref_key, 'resource', name, 'p:' .. process_id, fmt(now))
  end
end

local function claim_here(ref_key, token, ttl, now)
  local attempt = redis.call('HINCRBY', ref_key, 'attempts', 1)
  local claim_until = fmt(now + ttl)
  redis.call('HSET', ref_key, 'completing', '1', 'claim', token, 'claimUntil', claim_until)
  -- Claimed only once no live holder is left: it covers every reference so far.
  redis.call('HDEL', ref_key, 'reopened')
  return token, attempt, claim_until
end

local function claim(ref_key, pending_key, name, token, ttl, now)
  local _, attempt, claim_until = claim_here(ref_key, token, ttl, now)
  -- Still pending: if the claimant dies, the entry comes due when the claim lapses.
  redis.call('ZADD', pending_key, claim_until, name)
  return { token, attempt }
end

local function extend_claim_here(ref_key, token, ttl, now)
  if redis.call('HGET', ref_key, 'claim') ~= token then
    return nil
  end
  local claim_until = fmt(now + ttl)
  redis.call('HSET', ref_key, 'claimUntil', claim_until)
  return claim_until
end

local function finish_here(ref_key, token, seen)
  local current = redis.call('HMGET', ref_key, 'claim', 'claimUntil', 'reopened', 'modified')
  if current[1] ~= token then
    return nil
  end
  local claim_until = current[2] or '0'
  -- (Holders without 'reopened': a hash written before that field existed.)
  local holders = #holder_ids(ref_key)
  if not current[3] and holders == 0 then
    redis.call('DEL', ref_key)
    return claim_until, false
  end
  local left = math.max(0, (tonumber(current[4]) or 0) - seen)
  redis.call('HDEL', ref_key, 'modified', 'attempts', 'completing', 'claim', 'claimUntil', 'reopened')
  if left > 0 then
    redis.call('HSET', ref_key, 'modified', fmt(left))
  end
  if holders == 0 then
    redis.call('HSET', ref_key, 'completing', '1')
    return claim_until, true
  end
  return claim_until, false
end

local function abandon_here(ref_key, token)
  if redis.call('HGET', ref_key, 'claim') ~= token then
    return false
  end
  redis.call('HDEL', ref_key, 'claim', 'claimUntil')
  return true
end
