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
ARGV[7]  the epoch this process knows ('' for none); a marker this call must
         recreate takes the random part of the owner token as its epoch
ARGV[8]  maxTtl: longest lease any process may hold, in ms
ARGV[9]  fenceTtl: ms to keep the fence key after a grant
ARGV[10] wake-up channel of this lock
ARGV[11] the key as the caller gave it when the key names hash it, else ''
         (kept in the lock hash's 'key' field for `disref status`)
ARGV[12] '' on a single server; on Redis Cluster, the namespace marker's
         'created' (server ms, '0' when unknown): KEYS[4] is then a slot marker

Returns {1, fence, epoch} when granted (the same fence again when this owner
already holds the lock, with its lease renewed), {0, retryAfter, epoch} when
denied: retryAfter is the ms until the leases in the way end at the latest
(else until the registrations in the way end), >= 1; or {-1, retryAfter,
epoch} when the data-loss quarantine denies it (includes/marker.lua), with
retryAfter the ms until the quarantine ends.
The epoch is left out when it is ARGV[7]: the caller knows it already.

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
--- @include "includes/acquire.lua"

return acquire_lock(KEYS, ARGV, now_ms())
