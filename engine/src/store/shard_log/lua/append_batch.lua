-- Appends the frames of several shards in one call, each fenced as in
-- append.lua. Standalone Redis only: the keys span Cluster slots. One call
-- instead of one per shard is one MULTI/EXEC in the AOF instead of one per
-- frame, and one script invocation for Redis to run.
-- KEYS: per frame the shard's log stream and its positions hash.
-- ARGV: per frame its lsn, the frame, and the writer's lease epoch or ''.
-- Returns per frame, in order, the pair append.lua returns: {1, lsn} appended,
-- {0, head} fenced by position, {2, epoch} fenced by epoch (nothing written).
local out = {}
for i = 1, #KEYS / 2 do
  local log, pos = KEYS[2 * i - 1], KEYS[2 * i]
  local lsn_arg, frame, epoch_arg = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local status, value
  if epoch_arg ~= '' then
    local epoch = tonumber(redis.call('HGET', pos, 'epoch') or '0')
    if tonumber(epoch_arg) ~= epoch then
      status, value = 2, epoch
    end
  end
  if not status then
    local head = tonumber(redis.call('HGET', pos, 'head') or '0')
    local lsn = tonumber(lsn_arg)
    if lsn ~= head + 1 then
      status, value = 0, head
    else
      redis.call('XADD', log, lsn_arg .. '-1', 'f', frame)
      redis.call('HSET', pos, 'head', lsn_arg)
      status, value = 1, lsn
    end
  end
  out[#out + 1] = status
  out[#out + 1] = value
end
return out
