//! The one module that owns the bytes of the sharded log: every batch frame the
//! engine writes to a shard's log, every record inside it, the shard map, and the
//! integer encoding of money. Nothing else decides a stored byte.
//!
//! Rules that keep an old log readable:
//! - every frame starts with a magic and a **format version**; a reader refuses a
//!   version it does not know instead of guessing;
//! - every frame ends with a **CRC-32** of all its bytes, so a torn or corrupted
//!   frame is detected, never half-applied;
//! - every enum of the frame and checkpoint layouts has an **explicit numeric
//!   tag** (see [`RecordKind`]); tags are never positional and a retired tag is
//!   never reused;
//! - integers are little-endian, fixed width or (inside a frame's records since
//!   frame version 2) unsigned LEB128 varints; every length read from stored
//!   bytes is bounded before anything is allocated, and compressed parts (a
//!   frame's record section, a checkpointed state) carry their uncompressed
//!   length and must expand to exactly it.
//!
//! A checkpoint's account state is this module's since state version 4
//! (`state_v4/`: written by hand, decimals as integer mantissas, explicit enum
//! tags from `tags.rs`, a few small parts still postcard), and so are the
//! events inside a record since events format 2 ([`events`], record kind 3:
//! explicit tags, amounts as integer minor units). Records of events format 1
//! (record kind 1: postcard of the domain types, enums by position, decimals
//! as strings) are still read, and written by a node pinned to them for a
//! rolling upgrade; the golden test in `enum_order.rs` pins the variant order
//! of every enum postcard still writes (a variant moved or inserted fails
//! it), and `state.rs` versions the state layout.
//!
//! The golden-bytes tests at the bottom of each file fail when a change would make
//! an existing log read differently: change the format by adding a version, not
//! by editing one.

pub mod checkpoint;
pub mod compress;
#[cfg(test)]
mod enum_order;
pub mod events;
pub mod frame;
pub(crate) mod remote;
pub mod row;
pub mod shard;
pub mod state;
mod state_v4;
mod tags;
pub mod wire;

pub use compress::Compression;
pub use frame::{BatchFrame, LogRecord, RecordKind, FORMAT_VERSION, MAGIC};
pub use shard::{shard_of, ShardId, ShardLayout, DEFAULT_SHARDS};
pub use state::{decode_state, encode_state};

use rust_decimal::Decimal;

use crate::money::{Amount, Currency};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("unknown format version {0}")]
    UnknownVersion(u16),
    #[error("checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{0}")]
    Invalid(&'static str),
}

/// An amount as an integer count of its currency's minor unit (fen for CNY).
/// `Amount` never carries more decimals than its currency allows, so this is
/// exact; it fails only beyond ±9.2e18 minor units.
pub fn minor_units(amount: Amount) -> Result<i64, CodecError> {
    let scaled = amount.value() * Decimal::from(10i64.pow(amount.currency().scale()));
    if !scaled.fract().is_zero() {
        return Err(CodecError::Invalid(
            "amount finer than its currency's minor unit",
        ));
    }
    i64::try_from(scaled).map_err(|_| CodecError::Invalid("amount out of range"))
}

/// The amount of `units` minor units of `currency`.
pub fn from_minor_units(units: i64, currency: Currency) -> Result<Amount, CodecError> {
    Amount::new(Decimal::new(units, currency.scale()), currency)
        .map_err(|_| CodecError::Invalid("stored amount refused by its currency"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip_as_minor_units() {
        let cny = Currency::new("CNY", 2).unwrap();
        let jpy = Currency::new("JPY", 0).unwrap();
        let a = Amount::parse("1234.56", cny).unwrap();
        assert_eq!(minor_units(a).unwrap(), 123_456);
        assert_eq!(from_minor_units(123_456, cny).unwrap(), a);
        let y = Amount::parse("500", jpy).unwrap();
        assert_eq!(minor_units(y).unwrap(), 500);
        assert_eq!(from_minor_units(500, jpy).unwrap(), y);
    }
}
