-- Appends a whole batch in one call (standalone Redis only: its keys span many
-- slots). Per record, exactly what [`APPEND_LUA`] does; a record whose seq does not
-- follow is skipped and reported, the others are written.
--
-- KEYS: 4 per record (journal stream, last-seq counter, history hash, history key
-- zset). ARGV per record: seq, stream id, payload, number of rows, then `row key,
-- row payload` per row. Returns one number per record: 0 when appended, otherwise
-- the seq that was expected. `XADD` runs under `pcall`, so a record whose stream
-- disagrees with its counter is refused instead of aborting the batch half-way.
local out = {}
local a = 1
for k = 0, #KEYS - 1, 4 do
  local seq = tonumber(ARGV[a])
  local rows = tonumber(ARGV[a + 3])
  local last = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  if seq ~= last + 1 then
    out[#out + 1] = last + 1
  else
    local added = redis.pcall('XADD', KEYS[k + 1], ARGV[a + 1], 'p', ARGV[a + 2])
    if type(added) == 'table' and added.err then
      out[#out + 1] = last + 1
    else
      redis.call('SET', KEYS[k + 2], ARGV[a])
      for i = 0, rows - 1 do
        local key = ARGV[a + 4 + 2 * i]
        redis.call('HSET', KEYS[k + 3], key, ARGV[a + 5 + 2 * i])
        redis.call('ZADD', KEYS[k + 4], 0, key)
      end
      out[#out + 1] = 0
    end
  end
  a = a + 4 + 2 * rows
end
return out
