-- Drops whole the oldest history buckets of one shard that lie entirely before
-- the retention cutoff (see redis.rs and store/retention.rs).
-- KEYS[1] the shard's bucket index (member and score: the bucket number).
-- ARGV[1] the buckets' key prefix (okpay:{sNNN}:hist:, same hash tag, one
-- slot); ARGV[2] the first bucket kept, as an exclusive score bound '(N';
-- ARGV[3] the most buckets dropped by this call.
-- Each bucket's set is UNLINKed (freed off Redis's main thread) and leaves
-- the index in the same call, so the index never names a dropped set for
-- long, and a call that is repeated finds nothing more to do.
-- Returns {buckets dropped, rows they held, buckets still before the cutoff}.
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local rows = 0
for _, b in ipairs(old) do
  local set = ARGV[1] .. b
  rows = rows + redis.call('ZCARD', set)
  redis.call('UNLINK', set)
  redis.call('ZREM', KEYS[1], b)
end
return {#old, rows, redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[2])}
