-- Records, for the shard's current lease holder only, that it is about to run
-- inbox entries that must not run twice (commands without an idempotency
-- key), so that a next owner finding them unanswered knows they may have run.
-- KEYS[1] the shard's positions hash, KEYS[2] the shard's started hash.
-- ARGV[1] the owner's epoch, ARGV[2..] the entry ids.
-- Returns 1 when recorded, 0 when the epoch is not current (nothing recorded:
-- the entries must not be run).
if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
for i = 2, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
end
return 1
