--[[ read-reference-1.lua: a resource's state for `disref status`, unchanged.

KEYS[1]  ref  the resource's hash (layout: includes/references.lua)

Returns nil when the resource has no keys, else
{name, timesModified, completing, holder1, holder2, ...}: holders are process
ids, dead ones included until pruned; completing is 1 or 0.
]]
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
  return nil
end
local reply = { '', 0, 0 }
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  if field == 'resource' then
    reply[1] = value
  elseif field == 'modified' then
    reply[2] = tonumber(value)
  elseif field == 'completing' then
    reply[3] = 1
  elseif string.sub(field, 1, 2) == 'p:' then
    reply[#reply + 1] = string.sub(field, 3)
  end
end
return reply
