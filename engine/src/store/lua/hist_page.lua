-- One page of an account's layout-5 history rows (see redis.rs), newest first:
-- the shard's buckets are walked from the newest one that may hold a row below
-- the page's upper bound down to the oldest one that may hold a kept row,
-- until the page is full or, when a bound is given, that many buckets were
-- walked. Buckets are disjoint ranges of key time, so the concatenation is in
-- descending member order.
-- KEYS[1] the shard's bucket index (member and score: the bucket number).
-- ARGV[1] the buckets' key prefix (okpay:{sNNN}:hist:, the same hash tag as
-- KEYS[1], so one slot); ARGV[2], ARGV[3] the highest and lowest bucket to
-- walk (ZREVRANGEBYSCORE bounds: numbers, '+inf', '-inf'); ARGV[4], ARGV[5] the
-- members' upper and lower bounds (ZREVRANGEBYLEX syntax); ARGV[6] the limit;
-- ARGV[7] (optional) the most buckets to walk.
-- Returns {resume, member, member, ...}: resume is '' when the walk ended
-- (page full, or no older bucket left), else the number of the last bucket
-- walked (the page is short and older buckets were not looked at: a next page
-- starts below that bucket).
local limit = tonumber(ARGV[6])
local walk = tonumber(ARGV[7] or '')
local buckets
if walk then
  -- One more than the bound: whether an older bucket is left.
  buckets = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, walk + 1)
else
  buckets = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[3])
end
local out = {''}
local walked = 0
for i, b in ipairs(buckets) do
  local want = limit - (#out - 1)
  if want <= 0 then
    break
  end
  if walk and walked == walk then
    out[1] = buckets[i - 1]
    break
  end
  local got = redis.call('ZREVRANGEBYLEX', ARGV[1] .. b, ARGV[4], ARGV[5], 'LIMIT', 0, want)
  walked = walked + 1
  for _, m in ipairs(got) do
    out[#out + 1] = m
  end
end
return out
