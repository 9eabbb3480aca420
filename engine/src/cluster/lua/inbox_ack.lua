-- Marks inbox entries of a shard as answered, for the shard's current lease
-- holder only: advances the shard's inbox position and deletes the entries
-- (and their marks in the started hash, see inbox_mark.lua).
-- KEYS[1] the shard's inbox stream, KEYS[2] the shard's positions hash,
-- KEYS[3] the shard's started hash.
-- ARGV[1] the acknowledging owner's epoch, ARGV[2] the last entry id answered,
-- ARGV[3..] the entry ids to delete.
-- Returns 1 when done, 0 when the epoch is not current (nothing changed: the
-- next owner answers these entries again).
if tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[2], 'inbox', ARGV[2])
if #ARGV >= 3 then
  redis.call('XDEL', KEYS[1], unpack(ARGV, 3))
  redis.call('HDEL', KEYS[3], unpack(ARGV, 3))
end
return 1
