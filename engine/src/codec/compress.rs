//! The compression of the two large things the engine stores: a log frame's
//! record section ([`super::frame`]) and a checkpointed account state
//! ([`super::checkpoint`]). Both carry their uncompressed length next to the
//! compressed bytes, and a reader requires the bytes to expand to exactly it.
//!
//! Two algorithms, each named by an explicit tag in the layouts that use them:
//!
//! - **LZ4** block format (`lz4_flex`), written from 2026-11-29 to 2026-12-01
//!   and by a node pinned to it ([`Compression::Lz4`]) for a rolling upgrade;
//! - **zstd** (the reference library), written since: one zstd frame with its
//!   magic and header, no content size, no checksum (the frame and the
//!   checkpoint entry carry their own length, and a frame its CRC-32).
//!
//! Measured on the durable bench's frames and states (2026-12-01), zstd takes
//! the record sections to 0.64 of their size where LZ4 took them to 0.71, and
//! states to 0.61 where LZ4 took them to 0.73, at about half LZ4's speed. The
//! level is not part of the format: any level reads back the same.

use std::cell::RefCell;

use super::CodecError;

/// How a writer compresses frames and checkpointed states (`[engine]
/// compression` in the server's configuration). Readers take both whatever this
/// says, so a log may hold both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// LZ4, as every build before 2026-12-01 wrote: for a rolling upgrade, until
    /// every node reads zstd.
    Lz4,
    /// zstd.
    #[default]
    Zstd,
}

impl Compression {
    /// The configuration's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The compression a configuration names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// zstd's level for a frame's records: its fast mode, which compresses these
/// small sections as well as level 1 does, at nearly twice the speed.
pub(crate) const FRAME_LEVEL: i32 = -1;
/// zstd's level for a checkpointed state: level 1 (states are a few KB, and
/// level 1 takes a tenth more out of them than the fast mode).
pub(crate) const STATE_LEVEL: i32 = 1;

thread_local! {
    /// One compression context per thread and level, reused: creating one
    /// allocates its tables, which costs more than compressing a frame.
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// The bytes `zstd_into` may need for `raw`.
pub(crate) fn zstd_bound(raw: usize) -> usize {
    zstd::zstd_safe::compress_bound(raw)
}

/// Writes `raw` as one zstd frame at `level` into the start of `dst` (at least
/// [`zstd_bound`] bytes) and returns its length.
pub(crate) fn zstd_into(raw: &[u8], level: i32, dst: &mut [u8]) -> Option<usize> {
    let n = COMPRESSORS.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        let at = match cell.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                cell.push((level, new_compressor(level)?));
                cell.len() - 1
            }
        };
        cell[at].1.compress_to_buffer(raw, dst).ok()
    });
    // A context that failed to start or a re-entrant call (neither happens)
    // takes a fresh context.
    n.or_else(|| new_compressor(level)?.compress_to_buffer(raw, dst).ok())
}

fn new_compressor(level: i32) -> Option<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level).ok()?;
    // The layouts store the length and (frames) a CRC-32 themselves.
    c.include_checksum(false).ok()?;
    c.include_contentsize(false).ok()?;
    c.include_dictid(false).ok()?;
    Some(c)
}

/// The `len` bytes that the zstd frame `packed` expands to; anything else
/// (a corrupt frame, one that expands to more or fewer bytes) is an error.
/// `len` must already be bounded by the caller.
pub(crate) fn zstd_expand(
    packed: &[u8],
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(len);
    let result = DECOMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            slot.as_mut()
                .map(|d| d.decompress_to_buffer(packed, &mut out).ok())
        }
        Err(_) => None,
    });
    let n = match result {
        Some(n) => n,
        None => zstd::bulk::decompress_to_buffer(packed, &mut out).ok(),
    };
    match n {
        Some(n) if n == len && out.len() == len => Ok(out),
        _ => Err(CodecError::Invalid(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trips_at_both_levels_and_refuses_a_wrong_length() {
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        for level in [FRAME_LEVEL, STATE_LEVEL] {
            let mut packed = vec![0; zstd_bound(raw.len())];
            let n = zstd_into(&raw, level, &mut packed).unwrap();
            packed.truncate(n);
            assert!(
                packed.len() < raw.len() / 4,
                "level {level}: {}",
                packed.len()
            );
            assert_eq!(zstd_expand(&packed, raw.len(), "x").unwrap(), raw);
            assert_eq!(
                zstd_expand(&packed, raw.len() - 1, "short").unwrap_err(),
                CodecError::Invalid("short")
            );
            assert_eq!(
                zstd_expand(&packed, raw.len() + 1, "long").unwrap_err(),
                CodecError::Invalid("long")
            );
            assert!(zstd_expand(&packed[..packed.len() / 2], raw.len(), "torn").is_err());
        }
        assert!(zstd_expand(b"not zstd at all", 10, "junk").is_err());
    }

    #[test]
    fn names_round_trip() {
        for c in [Compression::Lz4, Compression::Zstd] {
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::from_name("gzip"), None);
        assert_eq!(Compression::default(), Compression::Zstd);
    }
}
