-- One page of an index in key order, keys and values read in one atomic step.
--
-- KEYS: index hash, index key zset. ARGV: ZRANGEBYLEX lower bound, limit.
-- Returns a flat `{key, value, key, value, ...}`.
local keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
local out = {}
for _, k in ipairs(keys) do
  local v = redis.call('HGET', KEYS[1], k)
  if v then
    out[#out + 1] = k
    out[#out + 1] = v
  end
end
return out
