--[[ Fragment: the per-slot data-loss marker of a Redis Cluster. Included by
acquire-4.lua after includes/time.lua and includes/marker.lua (server_start).

A Cluster script may only touch keys of one hash slot, so a lock's acquire
cannot read the namespace marker (slot of {ns}). Each slot a namespace uses
gets its own marker instead, NS:{m:TAG}:marker, where TAG is chosen so the
key lands in that slot (slots.ts). It is a hash like the namespace marker:
  epoch   random id chosen by the process that (re)created it
  since   server ms when it was (re)created
  until   server ms before which no lease may be granted in this slot
  replid  the replication id (INFO replication master_replid) of the node
          that served this slot when a lock script last ran here

check_slot_marker(marker_key, now, known, candidate, max_ttl, ns_created)
  -> epoch, until
  known       the epoch of this slot's marker this process saw last ('')
  ns_created  the namespace marker's 'created' (server ms; 0 when unknown)

A missing slot marker is recreated with a quarantine, as the namespace
marker is, with one difference: the node's restart only counts when it came
after the namespace was created (serverStart > ns_created), because a node
that restarted before any lease of the namespace existed lost none; this is
what lets a new namespace use a cluster whose nodes started recently.
  - serverStart + max_ttl when the node restarted after ns_created;
  - now + max_ttl when this process had seen this slot's marker.
A marker whose epoch differs from the one this process knew raises the
quarantine to since + max_ttl.

Failover: replication is asynchronous, so a replica promoted to primary may
miss the last writes of the old primary, such as a grant. A promoted replica
keeps the old primary's replication id as master_replid2. When the marker's
replid equals this node's master_replid2, the slot was served by the node
this one replaced: grants made just before the failover may be missing, so
nothing is granted in this slot for max_ttl (leases still held here are
extended and released as usual). A replid matching neither id means the
slot moved here (resharding) or the node restarted with its data: the new
id is recorded, without a quarantine.
]]
local function replication_ids()
  local info = redis.call('INFO', 'replication')
  return string.match(info, 'master_replid:(%x+)') or '', string.match(info, 'master_replid2:(%x+)') or ''
end

local function check_slot_marker(marker_key, now, known, candidate, max_ttl, ns_created)
  local replid, replid2 = replication_ids()
  local marker = redis.call('HMGET', marker_key, 'epoch', 'since', 'until', 'replid')
  local epoch = marker[1]
  if not epoch then
    local quarantine = 0
    local started = server_start(now)
    if started > ns_created then
      quarantine = started + max_ttl
    end
    if known ~= '' then
      quarantine = math.max(quarantine, now + max_ttl)
    end
    redis.call('HSET', marker_key, 'epoch', candidate, 'since', fmt(now), 'until', fmt(quarantine),
      'replid', replid)
    return candidate, quarantine
  end
  local quarantine = tonumber(marker[3]) or 0
  local raised = quarantine
  if known ~= '' and known ~= epoch then
    raised = math.max(raised, (tonumber(marker[2]) or now) + max_ttl)
  end
  if marker[4] ~= replid then
    if marker[4] == replid2 then
      raised = math.max(raised, now + max_ttl)
    end
    redis.call('HSET', marker_key, 'replid', replid)
  end
  if raised > quarantine then
    redis.call('HSET', marker_key, 'until', fmt(raised))
  end
  return epoch, raised
end
