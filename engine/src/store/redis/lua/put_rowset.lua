-- Upserts history rows of one shard into its row sets (see store/redis/history.rs): layout 5
-- (compact members, codec/row.rs, in one set per time bucket) for rows whose
-- key has the engine's shape, layout 3 for any other key.
-- KEYS[1] the shard's layout-3 row set: score-0 members
--   <account: 8 bytes big-endian><row key>\0<row>;
-- KEYS[2] the shard's positions hash (same hash tag), whose field `epoch` is
--   the shard's lease epoch (see engine/src/cluster);
-- KEYS[3] the shard's bucket index (a sorted set: member and score the bucket
--   number), listing the buckets that hold rows;
-- KEYS[4], KEYS[5], ... the shard's layout-5 row sets of the buckets the call
--   writes (okpay:{sNNN}:hist:<bucket>), in the order of ARGV's buckets:
--   score-0 members <prefix><body>, where the prefix (account and encoded key)
--   is prefix-free and the body's first byte (its version) is below 255:
--   0 or 1 for a single row, 2 for a group of rows of one account (codec/row.rs).
-- ARGV[1] the writer's lease epoch or '' (one node, no leases). When given it
-- must be the shard's current epoch, as for the log's appends: a node that lost
-- the shard (paused past its lease) must not bring back an older version of a
-- row the new owner has rewritten since. Then nothing of the call is written.
-- ARGV[2], ARGV[3]: of the layout-3 rows, how many replace an earlier version
-- (they come first) and how many there are; ARGV[4] the number B of buckets,
-- then per bucket its number, how many of its rows replace and how many there
-- are; then prefix, row, prefix, row, ... for the layout-3 rows, then prefix,
-- body, ... for each bucket's rows. A replacing row's earlier versions
-- (members starting with its prefix, and in layout 3 a zero byte) are removed
-- first (every version of a row has the same time, so the same bucket); a
-- row's first version needs no lookup. In a bucket set, a row's single
-- members are its prefix followed by body tag 0 or 1: the removal stops below
-- tag 2, a group member that starts with the same key and holds other rows
-- (codec/row.rs). Members go to ZADD in slices, well
-- under Lua's limit on unpacked values.
-- Returns {1, rows written} or {2, epoch} when fenced by epoch.
if ARGV[1] ~= '' then
  local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
  if tonumber(ARGV[1]) ~= epoch then
    return {2, epoch}
  end
end
local function put(set, replacing, count, first, sep, low, high)
  local slice = 500
  for i = 0, count - 1, slice do
    local last = math.min(i + slice, count) - 1
    local z = {}
    for j = i, last do
      local prefix = ARGV[first + 2 * j]
      if j < replacing then
        redis.call('ZREMRANGEBYLEX', set, '[' .. prefix .. low, high(prefix))
      end
      z[#z + 1] = 0
      z[#z + 1] = prefix .. sep .. ARGV[first + 2 * j + 1]
    end
    redis.call('ZADD', set, unpack(z))
  end
end
local r3, n3 = tonumber(ARGV[2]), tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
local at = 5 + 3 * buckets
put(KEYS[1], r3, n3, at, '\0', '\0', function(p) return '(' .. p .. '\1' end)
at = at + 2 * n3
local written = n3
for b = 0, buckets - 1 do
  local r, n = tonumber(ARGV[6 + 3 * b]), tonumber(ARGV[7 + 3 * b])
  put(KEYS[4 + b], r, n, at, '', '', function(p) return '(' .. p .. '\2' end)
  redis.call('ZADD', KEYS[3], ARGV[5 + 3 * b], ARGV[5 + 3 * b])
  at = at + 2 * n
  written = written + n
end
return {1, written}
