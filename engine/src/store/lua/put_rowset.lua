-- Upserts history rows of one shard into its row set (layout 3, see redis.rs).
-- KEYS[1] the shard's row set: a score-0 sorted set of members
--   <account: 8 bytes big-endian><row key>\0<row>;
-- KEYS[2] the shard's positions hash (same hash tag), whose field `epoch` is
--   the shard's lease epoch (see engine/src/cluster).
-- ARGV[1] the writer's lease epoch or '' (one node, no leases). When given it
-- must be the shard's current epoch, as for the log's appends: a node that lost
-- the shard (paused past its lease) must not bring back an older version of a
-- row the new owner has rewritten since. Then nothing of the call is written.
-- ARGV[2] how many of the rows that follow replace an earlier version (they
-- come first); then prefix, row, prefix, row, ... where prefix = <account
-- bytes><row key>. A replacing row's earlier versions (members starting with
-- its prefix and a zero byte) are removed first; a row's first version needs no
-- lookup. Members go to ZADD in slices, well under Lua's limit on unpacked values.
-- Returns {1, rows written} or {2, epoch} when fenced by epoch.
if ARGV[1] ~= '' then
  local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
  if tonumber(ARGV[1]) ~= epoch then
    return {2, epoch}
  end
end
local replacing = tonumber(ARGV[2])
local first = 3
local n = #ARGV - first + 1
local slice = 1000
for i = 0, n - 1, slice do
  local last = math.min(i + slice, n) - 1
  local z = {}
  for j = i, last, 2 do
    local prefix = ARGV[first + j]
    if j / 2 < replacing then
      redis.call('ZREMRANGEBYLEX', KEYS[1], '[' .. prefix .. '\0', '(' .. prefix .. '\1')
    end
    z[#z + 1] = 0
    z[#z + 1] = prefix .. '\0' .. ARGV[first + j + 1]
  end
  redis.call('ZADD', KEYS[1], unpack(z))
end
return {1, n / 2}
