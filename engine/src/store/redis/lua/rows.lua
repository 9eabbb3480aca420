-- One page of history rows, newest first: fields of a lexically ordered key set
-- between two bounds, with their rows from the matching hash.
-- KEYS[1] the rows hash, KEYS[2] its key set.
-- ARGV[1] the upper bound, ARGV[2] the lower bound (ZREVRANGEBYLEX syntax:
-- `(x` exclusive, `[x` inclusive, `+`/`-` open), ARGV[3] the limit.
-- A shard's rows use fields `<account>:<key>` (bounds `(<account>:<before>` or
-- `(<account>;` and `[<account>:`); an account's own keys, written with journal
-- records before shard logs, use the row key alone (bounds `(<before>` or `+`, `-`).
-- Returns a flat {field, row, field, row, ...}.
local fields = redis.call('ZREVRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, f in ipairs(fields) do
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    out[#out + 1] = f
    out[#out + 1] = v
  end
end
return out
