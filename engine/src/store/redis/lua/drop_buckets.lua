-- Drops whole the oldest history buckets of one shard that lie entirely before
-- the retention cutoff (see store/redis/history.rs and store/retention.rs).
-- Every key the script touches is declared, none is built from a name: the
-- caller reads the oldest buckets of the index first (ZRANGEBYSCORE ... LIMIT)
-- and declares their sets; each is dropped only if the index still lists it
-- below the cutoff (another node's sweep may have dropped it since).
-- KEYS[1] the shard's bucket index (member and score: the bucket number);
-- KEYS[2], KEYS[3], ... the bucket sets to drop (okpay:{sNNN}:hist:<bucket>,
-- same hash tag, one slot).
-- ARGV[1] the first bucket kept (a number); ARGV[i] for i >= 2 the number of
-- KEYS[i] (its member in the index).
-- Each bucket's set is UNLINKed (freed off Redis's main thread) and leaves
-- the index in the same call, so the index never names a dropped set for
-- long, and a call that is repeated finds nothing more to do.
-- Returns {buckets dropped, rows they held, buckets still before the cutoff}.
local kept = tonumber(ARGV[1])
local dropped = 0
local rows = 0
for i = 2, #KEYS do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < kept then
    rows = rows + redis.call('ZCARD', KEYS[i])
    redis.call('UNLINK', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return {dropped, rows, redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])}
