//! The shard map: which shard an account belongs to, and the layout stored with
//! the data. The number of shards is fixed per deployment (many more than nodes,
//! so shards can later move between nodes one by one); it is written once with
//! the data and read back at start-up, because changing it would move accounts.
//!
//! The hash is spelled out here (the SplitMix64 finalizer), not taken from the
//! standard library, whose hashers may change between releases or are seeded per
//! process: an account must land on the same shard forever.

use super::wire::{Reader, Writer};
use super::CodecError;
use crate::ids::AccountId;

/// Shards of a new deployment when none is configured.
pub const DEFAULT_SHARDS: u16 = 64;

/// A shard number, `0..layout.shards`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The Redis hash tag shared by every key of this shard (`s007`), so that a
    /// shard is one Redis Cluster slot and moves whole.
    pub fn tag(self) -> String {
        format!("s{:03}", self.0)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {}", self.0)
    }
}

/// The stable 64-bit mix of an account id (SplitMix64's finalizer).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shard of `account` among `shards` (`hash(account) mod shards`).
pub fn shard_of(account: AccountId, shards: u16) -> ShardId {
    debug_assert!(shards > 0);
    ShardId((mix(account.0) % u64::from(shards.max(1))) as u16)
}

/// What is stored with the data about its sharding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLayout {
    pub shards: u16,
}

/// Version of the layout record (independent of the frame version).
const LAYOUT_VERSION: u16 = 1;

impl ShardLayout {
    pub fn new(shards: u16) -> Result<Self, CodecError> {
        if shards == 0 {
            return Err(CodecError::Invalid("a layout needs at least one shard"));
        }
        Ok(ShardLayout { shards })
    }

    pub fn shard_of(&self, account: AccountId) -> ShardId {
        shard_of(account, self.shards)
    }

    pub fn all(&self) -> impl Iterator<Item = ShardId> {
        (0..self.shards).map(ShardId)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4);
        w.u16(LAYOUT_VERSION);
        w.u16(self.shards);
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u16()?;
        if version != LAYOUT_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let layout = ShardLayout::new(r.u16()?)?;
        if r.remaining() != 0 {
            return Err(CodecError::Invalid("trailing bytes after the layout"));
        }
        Ok(layout)
    }
}

impl Default for ShardLayout {
    fn default() -> Self {
        ShardLayout {
            shards: DEFAULT_SHARDS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden: these accounts must stay on these shards forever (a change here
    /// would strand every stored account on the wrong shard).
    #[test]
    fn shard_of_is_stable() {
        let got: Vec<u16> = [1u64, 2, 3, 0xdead_beef, u64::MAX]
            .iter()
            .map(|&n| shard_of(AccountId(n), 64).0)
            .collect();
        assert_eq!(got, GOLDEN_SHARDS);
        assert_eq!(shard_of(AccountId(12345), 1), ShardId(0));
    }
    /// Computed independently (a few lines of Python over the same constants).
    const GOLDEN_SHARDS: [u16; 5] = [1, 14, 45, 27, 32];

    #[test]
    fn accounts_spread_evenly() {
        let mut counts = [0u32; 64];
        for n in 1..=64_000u64 {
            counts[shard_of(AccountId(n), 64).0 as usize] += 1;
        }
        // 1,000 expected per shard; a decent mix stays well within ±20%.
        assert!(
            counts.iter().all(|&c| (800..=1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn layout_golden_bytes() {
        let l = ShardLayout::new(64).unwrap();
        assert_eq!(l.encode(), [1, 0, 64, 0]);
        assert_eq!(ShardLayout::decode(&[1, 0, 64, 0]).unwrap(), l);
        assert_eq!(
            ShardLayout::decode(&[2, 0, 64, 0]),
            Err(CodecError::UnknownVersion(2))
        );
        assert!(ShardLayout::decode(&[1, 0, 0, 0]).is_err());
        assert_eq!(ShardId(7).tag(), "s007");
    }
}
