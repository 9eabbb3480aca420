//! The Redis store's Lua scripts: [`LuaScript`] (a script with the hash
//! `EVALSHA` names it by) and one handle per script of the journals, indexes
//! and history rows. Each script's source is a file of its own in `lua/`,
//! opening with its KEYS, ARGV and reply; no script text lives in Rust.

use std::sync::LazyLock;

use ::redis::{Cmd, Script};

/// Appends one journal record with its history rows if its seq follows the last stored
/// one (the per-account journals of the actor runtime, read for moving them into shard
/// logs). KEYS, ARGV and replies: `lua/append_journal.lua`.
const APPEND_LUA: &str = include_str!("lua/append_journal.lua");

/// The same for a whole batch in one call (standalone Redis only). KEYS, ARGV and
/// replies: `lua/append_journal_batch.lua`.
const APPEND_BATCH_LUA: &str = include_str!("lua/append_journal_batch.lua");

/// Stores a snapshot unless a newer or equal one is stored, then trims the journal up
/// to it. KEYS, ARGV and replies: `lua/save_snapshot.lua`.
const SAVE_SNAPSHOT_LUA: &str = include_str!("lua/save_snapshot.lua");

/// Reads a snapshot and its journal in one atomic step. KEYS, ARGV and replies:
/// `lua/load_journal.lua`.
const LOAD_LUA: &str = include_str!("lua/load_journal.lua");

/// Claims an index key unless taken, keeping the ordered key set in step. KEYS, ARGV
/// and replies: `lua/claim_index.lua`.
const CLAIM_INDEX_LUA: &str = include_str!("lua/claim_index.lua");

/// Removes an index key from the hash and the ordered key set. KEYS, ARGV and replies:
/// `lua/delete_index.lua`.
const DELETE_INDEX_LUA: &str = include_str!("lua/delete_index.lua");

/// One page of an index in key order, keys and values in one atomic step. KEYS, ARGV
/// and replies: `lua/scan_index.lua`.
const SCAN_INDEX_LUA: &str = include_str!("lua/scan_index.lua");

/// A Lua script with its SHA1, which `EVALSHA` names it by. (`redis::Script` computes
/// the hash but keeps the source private, and `SCRIPT LOAD` needs the source.)
pub(crate) struct LuaScript {
    pub(super) source: &'static str,
    pub(super) hash: String,
}

impl LuaScript {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: Script::new(source).get_hash().to_owned(),
        }
    }

    /// An `EVALSHA` of this script on `keys`; the caller adds the `ARGV` arguments.
    pub(crate) fn call(&'static self, keys: &[&str]) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len()).arg(keys);
        cmd
    }

    /// The same call as an `EVAL` carrying the source (see
    /// [`crate::store::redis_cluster`] for why a cluster gets these): `evalsha`
    /// is a command made by [`call`](Self::call).
    pub(super) fn as_eval(&self, evalsha: &Cmd) -> Cmd {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(self.source);
        for arg in evalsha.args_iter().skip(2) {
            if let ::redis::Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}

pub(super) static APPEND: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(APPEND_LUA));
pub(super) static APPEND_BATCH: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(APPEND_BATCH_LUA));
pub(super) static SAVE_SNAPSHOT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(SAVE_SNAPSHOT_LUA));
pub(super) static LOAD: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(LOAD_LUA));
pub(super) static CLAIM_INDEX: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(CLAIM_INDEX_LUA));
pub(super) static DELETE_INDEX: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(DELETE_INDEX_LUA));
pub(super) static SCAN_INDEX: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(SCAN_INDEX_LUA));
pub(super) static ROWS: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/rows.lua")));
pub(super) static PUT_ROWSET: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/put_rowset.lua")));
pub(super) static HIST_PAGE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/hist_page.lua")));
pub(super) static DROP_BUCKETS: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/drop_buckets.lua")));
