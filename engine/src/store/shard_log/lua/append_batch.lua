-- Appends the frames of several shards in one call, each fenced as in
-- append.lua. Standalone Redis only: the keys span Cluster slots. One call
-- instead of one per shard is one MULTI/EXEC in the AOF instead of one per
-- frame, and one script invocation for Redis to run.
-- KEYS: per frame the shard's log stream and its positions hash.
-- ARGV: per frame its lsn, the frame, and the writer's lease epoch or '';
-- then, optionally, 'whole': if any frame is refused, none is written.
-- Returns per frame, in order, the pair append.lua returns: {1, lsn} appended,
-- {0, head} fenced by position, {2, epoch} fenced by epoch (nothing written),
-- or {3, head}: not written because another frame of a whole call was refused.
local n = #KEYS / 2
local whole = ARGV[3 * n + 1] == 'whole'
local out = {}
local refused = false
-- Every fence first (each shard appears once per call), then the writes.
for i = 1, n do
  local pos = KEYS[2 * i]
  local epoch_arg = ARGV[3 * i]
  local status, value
  if epoch_arg ~= '' then
    local epoch = tonumber(redis.call('HGET', pos, 'epoch') or '0')
    if tonumber(epoch_arg) ~= epoch then
      status, value = 2, epoch
    end
  end
  local head = tonumber(redis.call('HGET', pos, 'head') or '0')
  if not status and tonumber(ARGV[3 * i - 2]) ~= head + 1 then
    status, value = 0, head
  end
  if status then
    refused = true
  else
    status, value = 1, head
  end
  out[2 * i - 1] = status
  out[2 * i] = value
end
for i = 1, n do
  if out[2 * i - 1] == 1 then
    if whole and refused then
      out[2 * i - 1] = 3
    else
      local log, pos = KEYS[2 * i - 1], KEYS[2 * i]
      local lsn_arg, frame = ARGV[3 * i - 2], ARGV[3 * i - 1]
      redis.call('XADD', log, lsn_arg .. '-1', 'f', frame)
      redis.call('HSET', pos, 'head', lsn_arg)
      out[2 * i] = tonumber(lsn_arg)
    end
  end
end
return out
