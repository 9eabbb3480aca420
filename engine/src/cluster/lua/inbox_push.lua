-- Puts a request in a shard's inbox stream, bounded, and says who owns the
-- shard now (so the asker can wake that node).
-- KEYS[1] the shard's inbox stream, KEYS[2] the shard's lease.
-- ARGV[1] the most entries the inbox may hold, ARGV[2] the encoded request.
-- Returns {1, holder} when added, {0, holder} when the inbox is full (nothing
-- added); holder is the lease's value ('<node> <epoch>') or ''.
local holder = redis.call('GET', KEYS[2]) or ''
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return {0, holder}
end
redis.call('XADD', KEYS[1], '*', 'r', ARGV[2])
return {1, holder}
