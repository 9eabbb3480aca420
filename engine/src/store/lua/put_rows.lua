-- Upserts history rows of one shard.
-- KEYS[1] the shard's rows hash, KEYS[2] its key set (lexically ordered).
-- ARGV: field, row, field, row, ... where field = <account>:<row key>.
-- Fields are added to the set with score 0, so they sort by bytes. Arguments go
-- to HSET/ZADD in slices, well under Lua's limit on unpacked values.
local n = #ARGV
local slice = 1000
for i = 1, n, slice do
  local last = math.min(i + slice - 1, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  local z = {}
  for j = i, last, 2 do
    z[#z + 1] = 0
    z[#z + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[2], unpack(z))
end
return n / 2
