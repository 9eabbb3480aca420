-- One page of an account's layout-5 history rows (see redis.rs), newest first:
-- the shard's buckets are walked from the newest one that may hold a row below
-- the page's upper bound down to the oldest one that may hold a kept row,
-- until the page is full. Buckets are disjoint ranges of key time, so the
-- concatenation is in descending member order.
-- KEYS[1] the shard's bucket index (member and score: the bucket number).
-- ARGV[1] the buckets' key prefix (okpay:{sNNN}:hist:, the same hash tag as
-- KEYS[1], so one slot); ARGV[2], ARGV[3] the highest and lowest bucket to
-- walk (ZREVRANGEBYSCORE bounds: numbers, '+inf', '-inf'); ARGV[4], ARGV[5] the
-- members' upper and lower bounds (ZREVRANGEBYLEX syntax); ARGV[6] the limit.
-- Returns the members.
local buckets = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3])
local limit = tonumber(ARGV[6])
local out = {}
for _, b in ipairs(buckets) do
  local want = limit - #out
  if want <= 0 then
    break
  end
  local got = redis.call('ZREVRANGEBYLEX', ARGV[1] .. b, ARGV[4], ARGV[5], 'LIMIT', 0, want)
  for _, m in ipairs(got) do
    out[#out + 1] = m
  end
end
return out
