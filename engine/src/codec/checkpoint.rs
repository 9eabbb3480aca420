//! What a shard checkpoint stores per account, and the shard's own entry.
//!
//! An account's entry is its state as of its journal position `seq` (the number
//! of records of that account in the shard log so far), so replay after the
//! checkpoint skips the records the state already holds:
//!
//! ```text
//! version u8 (= 1) | seq u64 | state (`codec::state`: format tag, version, body)
//! ```
//!
//! The shard's own entry sits under the reserved account id 0 (never a real
//! account: see `AccountId::random`) and lists the accounts that had a transfer
//! in flight at the checkpoint, which recovery loads and drives on:
//!
//! ```text
//! version u8 (= 1) | count u32 | count × account u64
//! ```

use super::wire::{Reader, Writer};
use super::CodecError;
use crate::domain::AccountState;
use crate::ids::AccountId;

/// The reserved id of the shard's own checkpoint entry.
pub const SHARD_ENTRY: AccountId = AccountId(0);

const ACCOUNT_VERSION: u8 = 1;
const SHARD_VERSION: u8 = 1;

/// An account's checkpoint entry.
pub fn encode_account(seq: u64, state: &AccountState) -> Vec<u8> {
    let body = super::state::encode_state(state);
    let mut w = Writer::with_capacity(9 + body.len());
    w.u8(ACCOUNT_VERSION);
    w.u64(seq);
    w.buf.extend_from_slice(&body);
    w.buf
}

/// Reads an account's checkpoint entry: `(seq, state)`.
pub fn decode_account(bytes: &[u8]) -> Result<(u64, AccountState), CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != ACCOUNT_VERSION {
        return Err(CodecError::UnknownVersion(u16::from(version)));
    }
    let seq = r.u64()?;
    let state = super::state::decode_state(r.take(r.remaining())?)?;
    Ok((seq, state))
}

/// The shard's own entry: the accounts with a transfer in flight.
pub fn encode_shard(in_flight: &[AccountId]) -> Vec<u8> {
    let mut w = Writer::with_capacity(5 + 8 * in_flight.len());
    w.u8(SHARD_VERSION);
    // unwrap-free: a shard never holds 4 billion accounts in flight; saturate.
    w.u32(u32::try_from(in_flight.len()).unwrap_or(u32::MAX));
    for id in in_flight.iter().take(u32::MAX as usize) {
        w.u64(id.0);
    }
    w.buf
}

/// Reads the shard's own entry.
pub fn decode_shard(bytes: &[u8]) -> Result<Vec<AccountId>, CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != SHARD_VERSION {
        return Err(CodecError::UnknownVersion(u16::from(version)));
    }
    let n = r.u32()? as usize;
    let mut ids = Vec::with_capacity(n.min(r.remaining() / 8));
    for _ in 0..n {
        ids.push(AccountId(r.u64()?));
    }
    if r.remaining() != 0 {
        return Err(CodecError::Invalid("trailing bytes after the shard entry"));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_entry_golden_bytes() {
        let bytes = encode_shard(&[AccountId(1), AccountId(0x0102)]);
        assert_eq!(
            bytes,
            [1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            decode_shard(&bytes).unwrap(),
            vec![AccountId(1), AccountId(0x0102)]
        );
        assert_eq!(
            decode_shard(&[2, 0, 0, 0, 0]),
            Err(CodecError::UnknownVersion(2))
        );
    }

    #[test]
    fn account_entry_round_trips_and_keeps_its_header() {
        let state = AccountState::new(AccountId(7));
        let bytes = encode_account(42, &state);
        assert_eq!(&bytes[..9], &[1, 42, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_account(&bytes).unwrap(), (42, state));
        assert!(decode_account(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
