-- Upserts history rows of one shard into its row set (layout 3, see redis.rs).
-- KEYS[1] the shard's row set: a score-0 sorted set of members
--   <account: 8 bytes big-endian><row key>\0<row>.
-- ARGV[1] how many of the rows that follow replace an earlier version (they
-- come first); then prefix, row, prefix, row, ... where prefix = <account
-- bytes><row key>. A replacing row's earlier versions (members starting with
-- its prefix and a zero byte) are removed first; a row's first version needs no
-- lookup. Members go to ZADD in slices, well under Lua's limit on unpacked values.
local replacing = tonumber(ARGV[1])
local n = #ARGV - 1
local slice = 1000
for i = 1, n, slice do
  local last = math.min(i + slice - 1, n)
  local z = {}
  for j = i, last, 2 do
    local prefix = ARGV[j + 1]
    if (j + 1) / 2 <= replacing then
      redis.call('ZREMRANGEBYLEX', KEYS[1], '[' .. prefix .. '\0', '(' .. prefix .. '\1')
    end
    z[#z + 1] = 0
    z[#z + 1] = prefix .. '\0' .. ARGV[j + 2]
  end
  redis.call('ZADD', KEYS[1], unpack(z))
end
return n / 2
