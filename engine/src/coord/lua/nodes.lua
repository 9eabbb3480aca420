-- The registered nodes with Redis's time, read on the node that keeps them
-- (the same clock that wrote the expiries). KEYS[1] the membership zset.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
