-- Removes an index key from both the hash and the ordered key set.
--
-- KEYS: index hash, index key zset. ARGV: key.
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
