--[[ Fragment: the namespace marker that detects a store that lost its data.
Included by acquire-4.lua and beat-3.lua after includes/time.lua.

The marker is a hash per namespace, written once and never expiring:
  epoch    random id chosen by the process that (re)created it
  since    server ms when it was (re)created
  until    server ms before which no lease may be granted (quarantine)
  created  server ms from which the namespace surely exists ('0': unknown,
           the marker may have been recreated after a loss); Redis Cluster
           uses it for its per-slot markers (includes/slot-marker.lua)

check_marker(marker_key, now, known, candidate, max_ttl) -> epoch, until, created
  known      the epoch this process saw last ('' when it has seen none)
  candidate  a fresh random id, used when the marker must be recreated
  max_ttl    the longest lease any process may hold (connect({ maxTtl }))

A missing marker means this namespace is new, or the store lost its data
(restart without persistence, FLUSHALL, eviction) while leases may be live.
The marker is recreated with a quarantine:
  - serverStart + max_ttl, from INFO uptime: a server up for less than
    max_ttl may have restarted under live leases. A brand-new namespace on a
    freshly started server waits too; nothing can tell the two apart.
  - now + max_ttl when this process had seen an epoch: the data vanished
    while the server stayed up (FLUSHALL, eviction).
A process that finds a marker with an epoch other than the one it knew
learns of a loss someone else noticed first; leases from before that loss
end by since + max_ttl at the latest, so the quarantine is raised to that.
'created' is now when no quarantine was needed, else '0'.

Residual case, by design: after a FLUSHALL on a server up for longer than
max_ttl, if the first process to touch the namespace has never seen an epoch
(it started after the flush, and no live process heartbeat in between), it
cannot tell a flush from a new namespace and grants at once. Live processes
notice the new epoch at their next heartbeat and raise the quarantine; old
holders learn of the loss at their next extend (it returns false).

server_start(now) -> server ms when this redis-server process started.
]]
local function server_start(now)
  local info = redis.call('INFO', 'server')
  local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0
  return now - uptime * 1000
end

local function check_marker(marker_key, now, known, candidate, max_ttl)
  local marker = redis.call('HMGET', marker_key, 'epoch', 'since', 'until', 'created')
  local epoch = marker[1]
  if not epoch then
    local quarantine = server_start(now) + max_ttl
    if known ~= '' then
      quarantine = math.max(quarantine, now + max_ttl)
    end
    local created = now
    if quarantine > now then
      created = 0
    end
    redis.call('HSET', marker_key, 'epoch', candidate, 'since', fmt(now), 'until', fmt(quarantine),
      'created', fmt(created))
    return candidate, quarantine, created
  end
  local quarantine = tonumber(marker[3]) or 0
  if known ~= '' and known ~= epoch then
    local since = tonumber(marker[2]) or now
    if since + max_ttl > quarantine then
      quarantine = since + max_ttl
      redis.call('HSET', marker_key, 'until', fmt(quarantine))
    end
  end
  return epoch, quarantine, tonumber(marker[4]) or 0
end
