-- Appends one batch frame to a shard's log, fenced: only the frame that is
-- exactly the shard's head + 1 is written, so a stale writer is refused.
-- KEYS[1] the shard's log stream, KEYS[2] the shard's positions hash.
-- ARGV[1] the frame's lsn, ARGV[2] the frame, ARGV[3] (optional) the writer's
-- lease epoch (see engine/src/cluster): when given, it must be the shard's
-- current epoch, so an owner whose lease was taken over can't append.
-- Returns {1, lsn} when appended, {0, head} when fenced by position, {2, epoch}
-- when fenced by epoch (nothing written).
if ARGV[3] then
  local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
  if tonumber(ARGV[3]) ~= epoch then
    return {2, epoch}
  end
end
local head = tonumber(redis.call('HGET', KEYS[2], 'head') or '0')
local lsn = tonumber(ARGV[1])
if lsn ~= head + 1 then
  return {0, head}
end
redis.call('XADD', KEYS[1], ARGV[1] .. '-1', 'f', ARGV[2])
redis.call('HSET', KEYS[2], 'head', ARGV[1])
return {1, lsn}
