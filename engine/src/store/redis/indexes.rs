//! The indexes of the Redis store (idempotency keys and the like): claim a
//! key unless taken, read, delete, and scan in key order. Each index is a hash
//! and a score-0 sorted set of its keys under one hash tag, kept in step by
//! scripts.

use super::conn::{from_value, Call, Retry};
use super::keys::index_keys;
use super::scripts::{CLAIM_INDEX, DELETE_INDEX, SCAN_INDEX};
use super::RedisStore;
use crate::store::StoreFuture;

impl RedisStore {
    /// The body of [`Store::claim_index`]: one script call, never retried.
    ///
    /// [`Store::claim_index`]: crate::store::Store::claim_index
    pub(super) fn index_claim(&self, index: &str, key: &str, value: &str) -> StoreFuture<'_, bool> {
        let (hash, keys) = index_keys(index);
        let mut cmd = CLAIM_INDEX.call(&[&hash, &keys]);
        cmd.arg(key).arg(value);
        let call = Call::Script(&CLAIM_INDEX, cmd);
        Box::pin(async move {
            let claimed: i64 = from_value(self.exec_one(call, Retry::Never).await?)?;
            Ok(claimed == 1)
        })
    }

    /// The body of [`Store::get_index`]: one `HGET`.
    ///
    /// [`Store::get_index`]: crate::store::Store::get_index
    pub(super) fn index_get(&self, index: &str, key: &str) -> StoreFuture<'_, Option<String>> {
        let (hash, _) = index_keys(index);
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(hash).arg(key);
        Box::pin(async move { from_value(self.exec_one(Call::Plain(cmd), Retry::Safe).await?) })
    }

    /// The body of [`Store::delete_index`]: one script call.
    ///
    /// [`Store::delete_index`]: crate::store::Store::delete_index
    pub(super) fn index_delete(&self, index: &str, key: &str) -> StoreFuture<'_, ()> {
        let (hash, keys) = index_keys(index);
        let mut cmd = DELETE_INDEX.call(&[&hash, &keys]);
        cmd.arg(key);
        let call = Call::Script(&DELETE_INDEX, cmd);
        Box::pin(async move {
            self.exec_one(call, Retry::Safe).await?;
            Ok(())
        })
    }

    /// The body of [`Store::scan_index`]: one page in key order, one script call.
    ///
    /// [`Store::scan_index`]: crate::store::Store::scan_index
    pub(super) fn index_scan(
        &self,
        index: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(String, String)>> {
        let (hash, keys) = index_keys(index);
        let mut cmd = SCAN_INDEX.call(&[&hash, &keys]);
        cmd.arg(after.map_or("-".to_owned(), |k| format!("({k}")))
            .arg(limit);
        let call = Call::Script(&SCAN_INDEX, cmd);
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let flat: Vec<String> = from_value(self.exec_one(call, Retry::Safe).await?)?;
            Ok(flat
                .chunks_exact(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect())
        })
    }
}
