--[[ Fragment: the original key of a lock whose key names are hashed (long
keys, keys holding '}'; see keys.ts). Included by the scripts that write or
remove lock entries, before includes/lock-state.lua.

Such a lock hash also holds field 'key' -> the key as the caller gave it, so
`disref status` can show it. That field alone must not keep the hash alive:
drop_if_only_name(lock_key) deletes a hash left with nothing else (the hash
also expires with its last entry, so this only tidies up early).
]]
local function drop_if_only_name(lock_key)
  if redis.call('HLEN', lock_key) == 1 and redis.call('HEXISTS', lock_key, 'key') == 1 then
    redis.call('DEL', lock_key)
  end
end
