-- Takes a shard's lease if it is free (or still held by an earlier run of the
-- same node, which a restart left behind) and advances the shard's fencing
-- epoch, so any earlier owner's appends are refused from now on.
-- KEYS[1] the shard's lease, KEYS[2] the shard's positions hash (field 'epoch',
-- read by the append script). ARGV[1] node id, ARGV[2] ttl in ms.
-- Returns {1, epoch} when taken, {0, holder} when someone else holds it.
local holder = redis.call('GET', KEYS[1])
if holder and string.match(holder, '^(%S+)') ~= ARGV[1] then
  return {0, holder}
end
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return {1, epoch}
