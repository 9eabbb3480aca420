-- Registers a node as alive until now + ttl and lists the live nodes, by the
-- server's clock (one clock for every node, so their clocks may disagree).
-- KEYS[1] the membership sorted set (member: node id, score: expiry in ms).
-- ARGV[1] node id, ARGV[2] ttl in ms; ARGV[1] empty only lists.
-- Returns the ids of the nodes whose registration has not expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
