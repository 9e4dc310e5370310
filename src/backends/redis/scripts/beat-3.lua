--[[ beat-3.lua: a process heartbeat. Records that the process is alive, and
checks the namespace marker so a store that lost its data is noticed even
when nobody acquires.

KEYS[1]  processes  the process registry (layout: includes/references.lua)
KEYS[2]  process    hash of this process: beat, host, pid
KEYS[3]  marker     the namespace marker hash (includes/marker.lua)
ARGV[1]  process id
ARGV[2]  ttl: ms the process counts as alive without another heartbeat
ARGV[3]  the epoch this process knows ('' for none)
ARGV[4]  a fresh random epoch, used if the marker must be recreated
ARGV[5]  mode:
           'first'      registers a new process (a fresh id)
           'next'       renews a registered process; refused when it is
                        unknown or already ran out (declared dead for good)
           'heartbeat'  Backend.heartbeat(): registers an unknown process,
                        renews a live one, never revives one that ran out
ARGV[6]  host, ARGV[7] pid (recorded with 'first' and 'heartbeat')
ARGV[8]  maxTtl: longest lease any process may hold, in ms

Returns {alive, epoch, created} (an error, with 'first', when the server runs
Redis older than 6.2): alive is 1 when recorded, 0 when refused
(the process must take a new identity); epoch is the namespace's epoch;
created is the marker's 'created' (server ms, 0 when unknown), which Redis
Cluster passes to acquire-4.lua for its per-slot markers.
]]
--- @include "includes/time.lua"
--- @include "includes/marker.lua"

local processes_key, process_key, marker_key = KEYS[1], KEYS[2], KEYS[3]
local process_id, ttl, mode = ARGV[1], tonumber(ARGV[2]), ARGV[5]
-- Grants write fences with SET ... GET (includes/lock-state.lua), new in Redis
-- 6.2: an older server is refused when a process registers, with its version.
if mode == 'first' then
  local major, minor = string.match(redis.call('INFO', 'server'), 'redis_version:(%d+)%.(%d+)')
  if major and (tonumber(major) < 6 or (tonumber(major) == 6 and tonumber(minor) < 2)) then
    return redis.error_reply('ERR disref: needs Redis 6.2 or later; this server runs ' .. major .. '.' .. minor)
  end
end
local now = now_ms()
local epoch, _, created = check_marker(marker_key, now, ARGV[3], ARGV[4], tonumber(ARGV[8]))

local expires = redis.call('ZSCORE', processes_key, process_id)
if mode ~= 'first' then
  if expires then
    -- Ran out (expiry at the current ms included): it may have been pruned already.
    if tonumber(expires) <= now then
      return { 0, epoch, fmt(created) }
    end
  elseif mode == 'next' then
    return { 0, epoch, fmt(created) }
  end
end
redis.call('ZADD', processes_key, fmt(now + ttl), process_id)
redis.call('HSET', process_key, 'beat', fmt(now))
if mode ~= 'next' then
  redis.call('HSET', process_key, 'host', ARGV[6], 'pid', ARGV[7])
end
return { 1, epoch, fmt(created) }
