-- Appends one batch frame to a shard's log, fenced: only the frame that is
-- exactly the shard's head + 1 is written, so a stale writer is refused.
-- KEYS[1] the shard's log stream, KEYS[2] the shard's positions hash.
-- ARGV[1] the frame's lsn, ARGV[2] the frame.
-- Returns {1, lsn} when appended, {0, head} when fenced (nothing written).
local head = tonumber(redis.call('HGET', KEYS[2], 'head') or '0')
local lsn = tonumber(ARGV[1])
if lsn ~= head + 1 then
  return {0, head}
end
redis.call('XADD', KEYS[1], ARGV[1] .. '-1', 'f', ARGV[2])
redis.call('HSET', KEYS[2], 'head', ARGV[1])
return {1, lsn}
