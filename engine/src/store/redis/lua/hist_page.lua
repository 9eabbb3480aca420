-- One page of an account's layout-5 history rows (see store/redis/history.rs), newest first:
-- the shard's buckets are walked from the newest one that may hold a row below
-- the page's upper bound down to the oldest one that may hold a kept row,
-- until the page is full or that many buckets were walked. Buckets are
-- disjoint ranges of key time, so the concatenation is in descending member
-- order.
-- Every key the script touches is declared: it reads only KEYS[1] and bucket
-- sets listed in KEYS, and never builds a key name. The caller declares the
-- sets it expects the walk to read (a guess: the weeks below the page's
-- bound); the index decides which ones are read, so a declared set absent
-- from the index costs nothing, and when the walk reaches a set that was not
-- declared it stops and names all the sets the walk may read, for a second
-- call that declares them.
-- KEYS[1] the shard's bucket index (member and score: the bucket number);
-- KEYS[2], KEYS[3], ... bucket sets of the shard (okpay:{sNNN}:hist:<bucket>,
-- the same hash tag as KEYS[1], so one slot), in the order of their numbers
-- in ARGV[8], ARGV[9], ... (ARGV[6 + i] is the number of KEYS[i]).
-- ARGV[1], ARGV[2] the highest and lowest bucket to walk (ZREVRANGEBYSCORE
-- bounds: numbers, '+inf', '-inf'); ARGV[3], ARGV[4] the members' upper and
-- lower bounds (ZREVRANGEBYLEX syntax); ARGV[5] the limit; ARGV[6] the most
-- buckets to walk; ARGV[7] the group slot in ms (codec/row.rs).
-- A member may be a group of rows, all in the time slot of its first row's
-- (10 s, within one bucket): when the page is full, the members of the last
-- member's slot below it come too (between it and the slot's start; the
-- caller drops rows below its lower bound), so that every row at or above that slot's start is
-- in the page.
-- Returns {resume, member, member, ...}: resume is '' when the walk ended
-- (page full, or no older bucket left), else the number of the last bucket
-- walked (the page is short and older buckets were not looked at: a next page
-- starts below that bucket). Or {'need', bucket, bucket, ...}: the walk
-- reached a bucket whose set was not declared; listed are all the buckets it
-- may read (the newest ARGV[6] of the index between ARGV[1] and ARGV[2]).
local limit = tonumber(ARGV[5])
local walk = tonumber(ARGV[6])
local slot = tonumber(ARGV[7])
local declared = {}
for i = 2, #KEYS do
  declared[ARGV[6 + i]] = KEYS[i]
end
-- The rest of the slot of member m (in set): the members below m from the
-- slot's start (member bytes 9-14: the first row's time, 48 bits big-endian).
local function rest_of_slot(set, m)
  local ms = 0
  for i = 9, 14 do
    ms = ms * 256 + string.byte(m, i)
  end
  local start = ms - ms % slot
  local bytes = {}
  for i = 6, 1, -1 do
    bytes[i] = start % 256
    start = math.floor(start / 256)
  end
  local low = '[' .. string.sub(m, 1, 8) .. string.char(unpack(bytes))
  return redis.call('ZREVRANGEBYLEX', set, '(' .. m, low)
end
local last_set
-- One more than the bound: whether an older bucket is left.
local buckets = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, walk + 1)
local out = {''}
local walked = 0
for i, b in ipairs(buckets) do
  local want = limit - (#out - 1)
  if want <= 0 then
    break
  end
  if walked == walk then
    out[1] = buckets[i - 1]
    break
  end
  local set = declared[b]
  if not set then
    -- Nothing read so far is returned: the caller asks again, declaring
    -- every set this walk may read.
    local need = {'need'}
    for j = 1, math.min(#buckets, walk) do
      need[j + 1] = buckets[j]
    end
    return need
  end
  local got = redis.call('ZREVRANGEBYLEX', set, ARGV[3], ARGV[4], 'LIMIT', 0, want)
  walked = walked + 1
  last_set = set
  for _, m in ipairs(got) do
    out[#out + 1] = m
  end
end
if #out - 1 >= limit and last_set then
  for _, m in ipairs(rest_of_slot(last_set, out[#out])) do
    out[#out + 1] = m
  end
end
return out
