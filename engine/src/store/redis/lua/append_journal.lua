-- Appends one record, and upserts its history rows, if its seq follows the last
-- stored one.
--
-- KEYS: journal stream, last-seq counter, history hash, history key zset.
-- ARGV: seq, stream id `<seq>-1`, payload, then `row key, row payload` per row.
-- Returns `{1, seq}` when appended, `{0, expected}` when refused (nothing written,
-- rows included). A refusal is a normal reply rather than a Redis error so that it
-- can't be confused with a failure of the script itself. Rows go one `HSET`/`ZADD`
-- at a time rather than through `unpack`, whose argument count Lua's C stack limits.
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[1])
if seq ~= last + 1 then
  return {0, last + 1}
end
redis.call('XADD', KEYS[1], ARGV[2], 'p', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
for i = 4, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[4], 0, ARGV[i])
end
return {1, seq}
