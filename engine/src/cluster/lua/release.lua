-- Gives a shard's lease up (after the owner's final checkpoint) and advances the
-- epoch, so the releasing node itself can append nothing more to the shard.
-- KEYS[1] the shard's lease, KEYS[2] its positions hash. ARGV[1] node id,
-- ARGV[2] epoch. Returns 1 when released, 0 when it was not held any more.
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ' ' .. ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[2], 'epoch', 1)
return 1
