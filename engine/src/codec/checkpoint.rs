//! What a shard checkpoint stores per account, and the shard's own entry.
//!
//! An account's entry is its state as of its journal position `seq` (the number
//! of records of that account in the shard log so far), so replay after the
//! checkpoint skips the records the state already holds:
//!
//! ```text
//! version 3: version u8 (= 3) | seq u64 | state length u32 | zstd frame of the state
//! version 2: version u8 (= 2) | seq u64 | state length u32 | LZ4 block of the state
//! version 1: version u8 (= 1) | seq u64 | state
//! ```
//!
//! where the state is `codec::state`'s bytes (format tag, version, body).
//! Version 2 (written since 2026-11-29) compresses the state: a state carries up
//! to 256 notifications and a day of operations and idempotency keys, much of
//! it repeated (ids, currencies, nearby timestamps), and every checkpoint
//! rewrites every dirty account's whole state, so this is most of what
//! checkpoints cost in bytes. Version 3 (written since 2026-12-01, unless
//! `[engine] compression = "lz4"` pins version 2 for a rolling upgrade) uses
//! zstd, which leaves a sixth less than LZ4 did (see `compress.rs`). Versions
//! 1 and 2 still read.
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

use super::compress::Compression;
use super::wire::{Reader, Writer};
use super::CodecError;
use super::ShardId;
use crate::domain::AccountState;
use crate::ids::AccountId;

/// The reserved id of the shard's own checkpoint entry.
pub const SHARD_ENTRY: AccountId = AccountId(0);

/// The account entry versions: raw, LZ4 and zstd (all read).
const ACCOUNT_RAW: u8 = 1;
const ACCOUNT_LZ4: u8 = 2;
const ACCOUNT_ZSTD: u8 = 3;
/// The largest state a version-2 entry may claim to hold; a corrupted length
/// beyond it is refused instead of allocated.
const MAX_STATE_BYTES: usize = 64 << 20;
const SHARD_VERSION: u8 = 2;

/// An account's checkpoint entry, its state compressed with zstd (version 3).
pub fn encode_account(seq: u64, state: &AccountState) -> Vec<u8> {
    encode_account_as(seq, state, Compression::default())
}

/// An account's checkpoint entry, its state compressed with `compression`
/// (version 2 for LZ4, 3 for zstd).
pub fn encode_account_as(seq: u64, state: &AccountState, compression: Compression) -> Vec<u8> {
    let body = super::state::encode_state(state);
    let mut w = Writer::with_capacity(13);
    // unwrap-free: a state is far below 4 GiB (`MAX_STATE_BYTES` on reading).
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    match compression {
        Compression::Lz4 => {
            let packed = lz4_flex::block::compress(&body);
            w.u8(ACCOUNT_LZ4);
            w.u64(seq);
            w.u32(len);
            w.buf.extend_from_slice(&packed);
        }
        Compression::Zstd => {
            w.u8(ACCOUNT_ZSTD);
            w.u64(seq);
            w.u32(len);
            let at = w.buf.len();
            w.buf
                .resize(at + super::compress::zstd_bound(body.len()), 0);
            match super::compress::zstd_into(&body, super::compress::STATE_LEVEL, &mut w.buf[at..])
            {
                Some(n) => w.buf.truncate(at + n),
                // Never happens (the buffer is zstd's own bound); a raw entry
                // is correct too.
                None => {
                    w.buf.clear();
                    w.u8(ACCOUNT_RAW);
                    w.u64(seq);
                    w.buf.extend_from_slice(&body);
                }
            }
        }
    }
    w.buf
}

/// Reads an account's checkpoint entry: `(seq, state)`.
pub fn decode_account(bytes: &[u8]) -> Result<(u64, AccountState), CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    let seq = match version {
        ACCOUNT_RAW | ACCOUNT_LZ4 | ACCOUNT_ZSTD => r.u64()?,
        v => return Err(CodecError::UnknownVersion(u16::from(v))),
    };
    if version == ACCOUNT_RAW {
        let state = super::state::decode_state(r.take(r.remaining())?)?;
        return Ok((seq, state));
    }
    let len = r.u32()? as usize;
    if len > MAX_STATE_BYTES {
        return Err(CodecError::Invalid(
            "checkpointed state claims more than 64 MiB",
        ));
    }
    let packed = r.take(r.remaining())?;
    let body = if version == ACCOUNT_ZSTD {
        super::compress::zstd_expand(packed, len, "checkpointed state does not decompress")?
    } else {
        lz4_flex::block::decompress(packed, len)
            .map_err(|_| CodecError::Invalid("checkpointed state does not decompress"))?
    };
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
        let body = crate::codec::state::encode_state(&state);
        let len = (body.len() as u32).to_le_bytes();
        for (compression, version) in [(Compression::Zstd, 3), (Compression::Lz4, 2)] {
            let bytes = encode_account_as(42, &state, compression);
            assert_eq!(
                &bytes[..13],
                &[&[version, 42, 0, 0, 0, 0, 0, 0, 0][..], &len[..]].concat()[..]
            );
            assert_eq!(decode_account(&bytes).unwrap(), (42, state.clone()));
        }
        assert_eq!(encode_account(42, &state)[0], 3, "zstd by default");
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
    fn golden_bytes_of_versions_2_and_3() {
        // Fresh account 7 at seq 42, as written on 2026-11-29 (version 2, LZ4)
        // and on 2026-12-01 (version 3, zstd; checked independently: Python's
        // `zstandard` expands it to the 59 bytes of the state). Each must keep
        // decoding to exactly that. Only decoding is pinned: another encoder may
        // compress the same state to other valid bytes.
        for hex in [GOLDEN_V2, GOLDEN_V3] {
            let golden: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(
                decode_account(&golden).unwrap(),
                (42, AccountState::new(AccountId(7))),
                "{hex}"
            );
        }
    }

    const GOLDEN_V3: &str =
        "032a000000000000003b00000028b52ffd00009d0000584f4b5354040007000201000200c11b1be002";

    const GOLDEN_V2: &str =
        "022a00000000000000350000008f4f4b53540200070001000d1201210060000000000000";

    #[test]
    fn corrupted_entries_are_refused_not_allocated() {
        let state = AccountState::new(AccountId(7));
        for c in [Compression::Lz4, Compression::Zstd] {
            let mut bytes = encode_account_as(1, &state, c);
            // A length far beyond the bound.
            bytes[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(decode_account(&bytes).is_err());
            // A length that does not match the block.
            let mut bytes = encode_account_as(1, &state, c);
            bytes[9] ^= 1;
            assert!(decode_account(&bytes).is_err());
            // A torn block.
            let bytes = encode_account_as(1, &state, c);
            assert!(decode_account(&bytes[..bytes.len() - 2]).is_err());
            // The other compression's version byte.
            let mut bytes = encode_account_as(1, &state, c);
            bytes[0] = if bytes[0] == 2 { 3 } else { 2 };
            assert!(decode_account(&bytes).is_err());
        }
    }
}
