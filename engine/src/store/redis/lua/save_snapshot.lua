-- Stores a snapshot unless a newer or equal one is stored, then trims the journal
-- up to it, in one atomic step: records vanish only with the snapshot covering them.
--
-- KEYS: snapshot hash, journal stream, last-seq counter. ARGV: seq, payload, the
-- smallest stream id to keep (`<seq + 1>-0`, computed by the caller so no large
-- number is ever formatted by Lua, which would print it in exponent notation).
-- Returns 1 when stored, 0 when ignored as older.
local current = redis.call('HGET', KEYS[1], 'seq')
local seq = tonumber(ARGV[1])
if current and tonumber(current) >= seq then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'payload', ARGV[2])
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq > last then
  redis.call('SET', KEYS[3], ARGV[1])
end
return 1
