--[[ raise-fence-1.lua: raise a lock's fence key to at least a given fence,
so that this server's next grant of the lock hands out a greater one. Run
by the quorum backend on the members that granted a lease with a smaller
fence than the one the lease got (see ../quorum-backend.ts).

KEYS[1]  fence  the lock's fence key (`lockKeys(...).fence` in
                src/backends/redis/keys.ts; acquire-4.lua reads it)
ARGV[1]  fence: the fence the quorum handed out (an integer)
ARGV[2]  fenceTtl: ms to keep the fence key, as acquire-4.lua does

Returns 1 when the key was raised, 0 when it already held ARGV[1] or more
(it is then left as it is, expiry included).
]]
local fence = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') >= fence then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
