-- One page of an account's history rows in its shard's keys, newest first.
-- KEYS[1] the shard's rows hash, KEYS[2] its key set.
-- ARGV[1] the exclusive upper bound (`(<account>:<before>` or `(<account>;`),
-- ARGV[2] the inclusive lower bound (`[<account>:`), ARGV[3] the limit.
-- Returns a flat {field, row, field, row, ...}.
local fields = redis.call('ZREVRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, f in ipairs(fields) do
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    out[#out + 1] = f
    out[#out + 1] = v
  end
end
return out
