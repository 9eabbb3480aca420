-- Drops hits older than the window, records one when asked, and says how long
-- until the key may be tried again (-1: it may now).
--
-- KEYS[1] the hit times. ARGV: window ms, max hits, `1` to record a hit, a
-- unique member for the hit.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max + 1))
  redis.call('PEXPIRE', KEYS[1], window)
end
if redis.call('ZCARD', KEYS[1]) < max then
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then
  wait = 1
end
return wait
