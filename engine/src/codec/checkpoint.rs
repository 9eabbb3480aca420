//! What a shard checkpoint stores per account, and the shard's own entry.
//!
//! An account's entry is its state as of its journal position `seq` (the number
//! of records of that account in the shard log so far), so replay after the
//! checkpoint skips the records the state already holds:
//!
//! ```text
//! version 2: version u8 (= 2) | seq u64 | state length u32 | LZ4 block of the state
//! version 1: version u8 (= 1) | seq u64 | state
//! ```
//!
//! where the state is `codec::state`'s bytes (format tag, version, body).
//! Version 2 (written since 2026-11-29) compresses the state: a state carries up
//! to 256 notifications and a day of operations and idempotency keys, much of
//! it repeated (ids, currencies, nearby timestamps), and every checkpoint
//! rewrites every dirty account's whole state, so this is most of what
//! checkpoints cost in bytes. Version 1 entries still read.
//!
//! The shard's own entry sits under the reserved account id 0 (never a real
//! account: see `AccountId::random`). It lists the transfers in flight at the
//! checkpoint with their debits' positions, which recovery loads and drives on,
//! and the watermarks of the source shards the shard knew (see `runtime::saga`),
//! by which it forgot credits it had decided:
//!
//! ```text
//! version 2: version u8 (= 2) | count u32 | count × (account u64 | n u64 | debit lsn u64)
//!            | sources u32 | sources × (shard u16 | settled below u64)
//! version 1: version u8 (= 1) | count u32 | count × account u64
//! ```
//!
//! Version 1 (written before 2026-11-30) lists accounts only: their transfers'
//! debit positions are unknown (see [`ShardEntry::debits`]).

use super::wire::{Reader, Writer};
use super::CodecError;
use super::ShardId;
use crate::domain::AccountState;
use crate::ids::AccountId;

/// The reserved id of the shard's own checkpoint entry.
pub const SHARD_ENTRY: AccountId = AccountId(0);

/// The account entry version [`encode_account`] writes (1 is still read).
const ACCOUNT_VERSION: u8 = 2;
/// The largest state a version-2 entry may claim to hold; a corrupted length
/// beyond it is refused instead of allocated.
const MAX_STATE_BYTES: usize = 64 << 20;
const SHARD_VERSION: u8 = 2;

/// An account's checkpoint entry.
pub fn encode_account(seq: u64, state: &AccountState) -> Vec<u8> {
    let body = super::state::encode_state(state);
    let packed = lz4_flex::block::compress(&body);
    let mut w = Writer::with_capacity(13 + packed.len());
    w.u8(ACCOUNT_VERSION);
    w.u64(seq);
    // unwrap-free: a state is far below 4 GiB (`MAX_STATE_BYTES` on reading).
    w.u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    w.buf.extend_from_slice(&packed);
    w.buf
}

/// Reads an account's checkpoint entry: `(seq, state)`.
pub fn decode_account(bytes: &[u8]) -> Result<(u64, AccountState), CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    let seq = match version {
        1 | 2 => r.u64()?,
        v => return Err(CodecError::UnknownVersion(u16::from(v))),
    };
    if version == 1 {
        let state = super::state::decode_state(r.take(r.remaining())?)?;
        return Ok((seq, state));
    }
    let len = r.u32()? as usize;
    if len > MAX_STATE_BYTES {
        return Err(CodecError::Invalid(
            "checkpointed state claims more than 64 MiB",
        ));
    }
    let body = lz4_flex::block::decompress(r.take(r.remaining())?, len)
        .map_err(|_| CodecError::Invalid("checkpointed state does not decompress"))?;
    if body.len() != len {
        return Err(CodecError::Invalid(
            "checkpointed state has the wrong length",
        ));
    }
    Ok((seq, super::state::decode_state(&body)?))
}

/// The shard's own entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardEntry {
    /// The accounts with a transfer in flight.
    pub in_flight: Vec<AccountId>,
    /// The transfers in flight: account, operation number, and the position of
    /// the frame that debited it. Empty in a version-1 entry, whose transfers'
    /// positions were never recorded.
    pub debits: Vec<(AccountId, u64, u64)>,
    /// Per source shard, the highest watermark known (credits below it forgotten).
    pub settled: Vec<(ShardId, u64)>,
}

/// The shard's own entry, in the version [`decode_shard`] reads best.
pub fn encode_shard(debits: &[(AccountId, u64, u64)], settled: &[(ShardId, u64)]) -> Vec<u8> {
    let mut w = Writer::with_capacity(9 + 24 * debits.len() + 10 * settled.len());
    w.u8(SHARD_VERSION);
    // unwrap-free: a shard never holds 4 billion transfers in flight; saturate.
    w.u32(u32::try_from(debits.len()).unwrap_or(u32::MAX));
    for (account, n, lsn) in debits.iter().take(u32::MAX as usize) {
        w.u64(account.0);
        w.u64(*n);
        w.u64(*lsn);
    }
    w.u32(u32::try_from(settled.len()).unwrap_or(u32::MAX));
    for (shard, below) in settled.iter().take(u32::MAX as usize) {
        w.u16(shard.0);
        w.u64(*below);
    }
    w.buf
}

/// Reads the shard's own entry (either version).
pub fn decode_shard(bytes: &[u8]) -> Result<ShardEntry, CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    let mut entry = ShardEntry::default();
    match version {
        1 => {
            let n = r.u32()? as usize;
            entry.in_flight.reserve(n.min(r.remaining() / 8));
            for _ in 0..n {
                entry.in_flight.push(AccountId(r.u64()?));
            }
        }
        2 => {
            let n = r.u32()? as usize;
            entry.debits.reserve(n.min(r.remaining() / 24));
            for _ in 0..n {
                entry.debits.push((AccountId(r.u64()?), r.u64()?, r.u64()?));
            }
            let n = r.u32()? as usize;
            entry.settled.reserve(n.min(r.remaining() / 10));
            for _ in 0..n {
                entry.settled.push((ShardId(r.u16()?), r.u64()?));
            }
            entry.in_flight = entry.debits.iter().map(|(a, _, _)| *a).collect();
            entry.in_flight.sort_unstable();
            entry.in_flight.dedup();
        }
        v => return Err(CodecError::UnknownVersion(u16::from(v))),
    }
    if r.remaining() != 0 {
        return Err(CodecError::Invalid("trailing bytes after the shard entry"));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_entry_version_1_still_reads() {
        // As written before 2026-11-30: version, count, accounts.
        let v1 = [
            1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(
            decode_shard(&v1).unwrap(),
            ShardEntry {
                in_flight: vec![AccountId(1), AccountId(0x0102)],
                debits: Vec::new(),
                settled: Vec::new(),
            }
        );
        assert_eq!(
            decode_shard(&[3, 0, 0, 0, 0]),
            Err(CodecError::UnknownVersion(3))
        );
    }

    #[test]
    fn shard_entry_golden_bytes() {
        let bytes = encode_shard(
            &[(AccountId(0x0102), 3, 0x0405), (AccountId(0x0102), 4, 6)],
            &[(ShardId(7), 0x0809)],
        );
        let golden: &[u8] = &[
            2, // version
            2, 0, 0, 0, // two transfers in flight
            2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 4, 0, 0, 0, 0, 0, 0, //
            2, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, //
            1, 0, 0, 0, // one source shard
            7, 0, 9, 8, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, golden);
        assert_eq!(
            decode_shard(golden).unwrap(),
            ShardEntry {
                in_flight: vec![AccountId(0x0102)],
                debits: vec![(AccountId(0x0102), 3, 0x0405), (AccountId(0x0102), 4, 6)],
                settled: vec![(ShardId(7), 0x0809)],
            }
        );
        // Torn or padded entries are refused.
        assert!(decode_shard(&golden[..golden.len() - 1]).is_err());
        assert!(decode_shard(&[golden, &[0]].concat()).is_err());
        // A count far beyond the bytes is refused without allocating for it.
        assert!(decode_shard(&[2, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn account_entry_round_trips_and_keeps_its_header() {
        let state = AccountState::new(AccountId(7));
        let bytes = encode_account(42, &state);
        let body = crate::codec::state::encode_state(&state);
        let len = (body.len() as u32).to_le_bytes();
        assert_eq!(
            &bytes[..13],
            &[&[2, 42, 0, 0, 0, 0, 0, 0, 0][..], &len[..]].concat()[..]
        );
        assert_eq!(decode_account(&bytes).unwrap(), (42, state));
        assert!(decode_account(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn version_1_entries_still_read() {
        // As written before compression: version, seq, the state's bytes.
        let state = AccountState::new(AccountId(7));
        let v1 = [
            &[1, 42, 0, 0, 0, 0, 0, 0, 0][..],
            &crate::codec::state::encode_state(&state),
        ]
        .concat();
        assert_eq!(decode_account(&v1).unwrap(), (42, state));
    }

    #[test]
    fn version_2_golden_bytes() {
        // A version-2 entry as written on 2026-11-29: fresh account 7 at seq 42.
        // It must keep decoding to exactly that. (Only decoding is pinned: another
        // LZ4 encoder may compress the same state to other valid bytes.)
        let golden: Vec<u8> = (0..GOLDEN_V2.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN_V2[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            decode_account(&golden).unwrap(),
            (42, AccountState::new(AccountId(7)))
        );
    }

    const GOLDEN_V2: &str =
        "022a00000000000000350000008f4f4b53540200070001000d1201210060000000000000";

    #[test]
    fn corrupted_entries_are_refused_not_allocated() {
        let state = AccountState::new(AccountId(7));
        let mut bytes = encode_account(1, &state);
        // A length far beyond the bound.
        bytes[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_account(&bytes).is_err());
        // A length that does not match the block.
        let mut bytes = encode_account(1, &state);
        bytes[9] ^= 1;
        assert!(decode_account(&bytes).is_err());
        // A torn block.
        let bytes = encode_account(1, &state);
        assert!(decode_account(&bytes[..bytes.len() - 2]).is_err());
    }
}
