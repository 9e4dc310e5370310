--[[ find-pending-1.lua: recovery, part two. Lists resources of one kind whose
completion may be claimed now (queued, or their claim lapsed).

KEYS[1]  pending  the pending completions of one kind (includes/references.lua)
ARGV[1]  most names to return

Returns names, earliest due first. Read-only: claim-pending-3.lua decides,
per name, atomically; a name it finds stale it drops from the set. This is a
separate step so that every script passes the keys it touches in KEYS: the
resources' hashes cannot be named before their names are read.
]]
--- @include "includes/time.lua"

return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms()), 'LIMIT', 0, tonumber(ARGV[1]))
