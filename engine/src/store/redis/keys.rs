//! Every Redis key name of the store (the table in the module's notes): the
//! per-account journal keys, the history rows' keys of each layout, the
//! indexes' and the account list. In one place because the names are a stored
//! contract: data written under them must be found again (golden test below).

use crate::codec::ShardId;
use crate::ids::AccountId;

/// The set of every account with a journal record or snapshot.
pub(super) const ACCOUNTS_KEY: &str = "okpay:accounts";

pub(super) fn journal_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:journal")
}

pub(super) fn seq_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:seq")
}

pub(super) fn snapshot_key(account: AccountId) -> String {
    format!("okpay:{{{account}}}:snapshot")
}

/// The account's history hash and ordered row key set, under the account's hash tag
/// so the append script can write them with the journal on one Cluster slot.
pub(super) fn history_keys(account: AccountId) -> (String, String) {
    (
        format!("okpay:{{{account}}}:history"),
        format!("okpay:{{{account}}}:history:keys"),
    )
}

/// A shard's history rows: one hash (field `<account>:<row key>` → row) and its
/// fields in a lexically ordered set, both under the shard's hash tag, so a
/// shard's rows move with it and a batch writes them in one call per shard.
pub(super) fn rows_keys(shard: ShardId) -> (String, String) {
    let tag = shard.tag();
    (
        format!("okpay:{{{tag}}}:rows"),
        format!("okpay:{{{tag}}}:rows:keys"),
    )
}

/// A shard's history rows since layout 3: one score-0 sorted set whose members
/// are `<account: 8 bytes big-endian><row key>\0<row>`, under the shard's hash
/// tag. One `ZADD` member per row instead of a hash field and a sorted-set member
/// each carrying the 73-byte text `<account>:<row key>` (layout 2, [`rows_keys`],
/// still read): about 95 fewer AOF bytes per row. Row keys are ASCII and never
/// hold a zero byte, so the first zero after the account ends the key.
pub(super) fn rowset_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:rowset", shard.tag())
}

/// A shard's history rows in layout 4: one score-0 sorted set of compact
/// members (`codec::row`: account, binary key, compact body), about 40 bytes
/// for a transfer's row where layout 3 took 113. Rows whose key does not have
/// the engine's shape stay in layout 3 ([`rowset_key`]). Read, no longer
/// written (layout 5, [`hist_bucket_key`], has the same members by bucket).
pub(super) fn hist_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist", shard.tag())
}

/// What the names of a shard's layout-5 bucket sets start with.
pub(super) fn hist_bucket_prefix(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist:", shard.tag())
}

/// A shard's history rows since layout 5: the members of layout 4, one sorted
/// set per time bucket (`store::retention`: 7 days of key time), so rows past
/// retention go a whole set at a time. Under the shard's hash tag like the
/// rest, so a shard is still one Cluster slot.
pub(super) fn hist_bucket_key(shard: ShardId, bucket: u64) -> String {
    format!("{}{bucket}", hist_bucket_prefix(shard))
}

/// The buckets of a shard that hold layout-5 rows: a sorted set whose members
/// are the bucket numbers and whose scores are the same numbers, so pages
/// walk only the buckets that exist and the sweep finds the oldest at once.
pub(super) fn hist_index_key(shard: ShardId) -> String {
    format!("okpay:{{{}}}:hist:buckets", shard.tag())
}

/// The index's hash and ordered key set. Both start with the same `{name` prefix, so
/// whatever the name contains they share a hash tag and a Cluster slot.
pub(super) fn index_keys(index: &str) -> (String, String) {
    (
        format!("okpay:idx:{{{index}}}"),
        format!("okpay:idx:{{{index}}}:keys"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_5_key_names_are_golden() {
        // Stored contract: data written under these names must be found again.
        assert_eq!(hist_bucket_key(ShardId(7), 2976), "okpay:{s007}:hist:2976");
        assert_eq!(hist_bucket_prefix(ShardId(7)), "okpay:{s007}:hist:");
        assert_eq!(hist_index_key(ShardId(7)), "okpay:{s007}:hist:buckets");
        assert_eq!(hist_bucket_key(ShardId(1023), 0), "okpay:{s1023}:hist:0");
        // The layout-4 set and the index never collide with a bucket's name.
        assert_ne!(hist_key(ShardId(7)), hist_bucket_key(ShardId(7), 0));
    }
}
