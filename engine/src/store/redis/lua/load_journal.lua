-- Reads the snapshot and the journal in one atomic step, so a concurrent snapshot
-- and trim can't slip between the two reads and hide records.
--
-- KEYS: snapshot hash, journal stream. Returns `{seq|nil, payload|nil, entries}`.
local snap = redis.call('HMGET', KEYS[1], 'seq', 'payload')
return {snap[1], snap[2], redis.call('XRANGE', KEYS[2], '-', '+')}
