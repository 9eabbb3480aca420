-- Writes account states of one shard, advances its checkpoint position, then
-- trims the log frames the checkpoint covers.
-- KEYS[1] the shard's log stream, KEYS[2] its positions hash, KEYS[3] its
-- checkpointed states hash (field: 8-byte account id, value: encoded state).
-- ARGV[1] the checkpoint's lsn, ARGV[2] the writer's lease epoch or '' (see
-- engine/src/cluster: when given, it must be the shard's current epoch, so an
-- owner whose lease was taken over can't overwrite the new owner's states),
-- then (account, state) pairs.
-- Returns {1, checkpoint} when done or already covered, {0, head} when the
-- position is past the head, {2, epoch} when fenced by epoch (nothing written).
if ARGV[2] ~= '' then
  local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0')
  if tonumber(ARGV[2]) ~= epoch then
    return {2, epoch}
  end
end
local head = tonumber(redis.call('HGET', KEYS[2], 'head') or '0')
local ckpt = tonumber(redis.call('HGET', KEYS[2], 'ckpt') or '0')
local lsn = tonumber(ARGV[1])
if lsn > head then
  return {0, head}
end
if lsn <= ckpt then
  return {1, ckpt}
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], 'ckpt', ARGV[1])
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', lsn + 1))
return {1, lsn}
