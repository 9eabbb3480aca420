-- Extends a shard's lease, only for the node and epoch that hold it.
-- KEYS[1] the shard's lease, KEYS[2] its positions hash. ARGV[1] node id,
-- ARGV[2] epoch, ARGV[3] ttl in ms. Returns 1 when renewed, 0 when lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ' ' .. ARGV[2] then
  return 0
end
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
