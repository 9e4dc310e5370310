--[[ finish-completion-1.lua: Redis Cluster, the resource step of
finish-completion-2.lua: end the lifetime if this token holds the claim. The
caller then drops the pending entry (unqueue-pending-2.lua, only while its
score is at most the returned claimUntil, so a newer lifetime's entry stays),
or queues it at once (queue-pending-1.lua) when a next lifetime ended while
the completion ran.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)
ARGV[1]  resource name
ARGV[2]  claim token
ARGV[3]  seen: the timesModified the completion was given

Returns {claimUntil, due} when this token held the claim (claimUntil in
server ms; due 1 when the next lifetime's completion must be queued now),
as finish_here in includes/references.lua decides. Returns 0, changing
nothing, when the claim is another's.
]]
--- @include "includes/time.lua"
--- @include "includes/references.lua"

local claim_until, due = finish_here(KEYS[1], ARGV[2], tonumber(ARGV[3]))
if not claim_until then
  return 0
end
return { claim_until, due and 1 or 0 }
