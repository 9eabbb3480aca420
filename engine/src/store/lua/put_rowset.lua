-- Upserts history rows of one shard into its row set (layout 3, see redis.rs).
-- KEYS[1] the shard's row set: a score-0 sorted set of members
--   <account: 8 bytes big-endian><row key>\0<row>.
-- ARGV: prefix, row, prefix, row, ... where prefix = <account bytes><row key>.
-- A row's earlier version (same prefix) is removed first; a ZREMRANGEBYLEX that
-- removes nothing changes nothing and is not written to the AOF. Members go to
-- ZADD in slices, well under Lua's limit on unpacked values.
local n = #ARGV
local slice = 1000
for i = 1, n, slice do
  local last = math.min(i + slice - 1, n)
  local z = {}
  for j = i, last, 2 do
    local prefix = ARGV[j]
    redis.call('ZREMRANGEBYLEX', KEYS[1], '[' .. prefix .. '\0', '(' .. prefix .. '\1')
    z[#z + 1] = 0
    z[#z + 1] = prefix .. '\0' .. ARGV[j + 1]
  end
  redis.call('ZADD', KEYS[1], unpack(z))
end
return n / 2
