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

Redis Cluster: a resource script reads liveness from {ns}:processes (and
writes {ns}:held:<id>, {ns}:pending:<kind>), which lie in another slot than
the resource's hash. That is fine on one server (every key is passed in
KEYS), but a Cluster version must split each operation: ask the registry's
slot which holders are dead (by that node's clock), then pass those ids to
the resource script, which prunes only them. Death is permanent here, so a
holder reported dead can be pruned later without risk; one reported live
that dies meanwhile is merely counted once more and later reaped. Adding a
reference must then write {ns}:held:<id> (checking liveness there) before the
resource's hash, so that a reaper always finds the resource to queue.

live_holders(ref_key, processes_key, now) -> number of live holders, after
  deleting the fields of dead ones (not in the registry, or ran out).
settle(ref_key, pending_key, name, now) marks a resource without live
  holders as completing and queues it, unless a live claim already runs it.
claim(ref_key, pending_key, name, token, ttl, now) -> {token, attempt}.
]]
local function is_live(processes_key, process_id, now)
  local expires = redis.call('ZSCORE', processes_key, process_id)
  return expires ~= false and tonumber(expires) > now
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

local function claim(ref_key, pending_key, name, token, ttl, now)
  local attempt = redis.call('HINCRBY', ref_key, 'attempts', 1)
  local claim_until = fmt(now + ttl)
  redis.call('HSET', ref_key, 'completing', '1', 'claim', token, 'claimUntil', claim_until)
  -- Still pending: if the claimant dies, the entry comes due when the claim lapses.
  redis.call('ZADD', pending_key, claim_until, name)
  return { token, attempt }
end
