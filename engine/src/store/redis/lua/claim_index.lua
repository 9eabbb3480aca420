-- Claims an index key unless taken, keeping the ordered key set in step.
--
-- KEYS: index hash, index key zset. ARGV: key, value. Returns 1 when claimed.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 1
end
return 0
