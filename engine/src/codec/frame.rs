//! A batch frame: everything one shard appends to its log in one write — the
//! records of every command decided for that shard's accounts in one executor
//! batch. Layout (all little-endian):
//!
//! ```text
//! magic "OKPL" | version u16 | shard u16 | frame length u32 | lsn u64 | count u32
//! count × ( kind u8 | account u64 | seq u64 | payload length u32 | payload )
//! crc32 u32   (IEEE, over every byte before it)
//! ```
//!
//! `lsn` is the frame's position in its shard's log (1, 2, 3, ...): the store
//! appends a frame only if it is exactly the shard's head + 1, which fences out a
//! stale writer. The frame length up front lets a reader walk a segment file frame
//! by frame and stop at a torn tail.

use super::shard::ShardId;
use super::wire::{Reader, Writer};
use super::CodecError;
use crate::ids::AccountId;

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"OKPL";
/// The frame format this build writes (and the only one it reads).
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 4 + 8 + 4;
/// Bytes after the last record (the checksum).
pub const TRAILER_LEN: usize = 4;

/// What a log record holds. Tags are explicit and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The encoded domain events of one command on `account`, its journal `seq`.
    Events,
    /// The destination shard applied every credit of source shard `account`
    /// (read as a shard number) up to source lsn `seq`: the dedupe watermark of
    /// cross-shard credits. Empty payload.
    CreditWatermark,
}

impl RecordKind {
    pub fn tag(self) -> u8 {
        match self {
            RecordKind::Events => 1,
            RecordKind::CreditWatermark => 2,
        }
    }

    pub fn from_tag(tag: u8) -> Result<Self, CodecError> {
        match tag {
            1 => Ok(RecordKind::Events),
            2 => Ok(RecordKind::CreditWatermark),
            tag => Err(CodecError::UnknownTag {
                what: "record kind",
                tag,
            }),
        }
    }
}

/// One record of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub kind: RecordKind,
    pub account: AccountId,
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// One shard's batch: the unit appended, checksummed and fenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFrame {
    pub shard: ShardId,
    pub lsn: u64,
    pub records: Vec<LogRecord>,
}

fn checksum(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

impl BatchFrame {
    /// The frame's bytes. Fails only for a frame over 4 GiB.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let body: usize = self.records.iter().map(|r| 21 + r.payload.len()).sum();
        let mut w = Writer::with_capacity(HEADER_LEN + body + TRAILER_LEN);
        w.buf.extend_from_slice(&MAGIC);
        w.u16(FORMAT_VERSION);
        w.u16(self.shard.0);
        w.u32(0); // the frame length, patched below
        w.u64(self.lsn);
        let count = u32::try_from(self.records.len())
            .map_err(|_| CodecError::Invalid("too many records in one frame"))?;
        w.u32(count);
        for r in &self.records {
            w.u8(r.kind.tag());
            w.u64(r.account.0);
            w.u64(r.seq);
            w.bytes(&r.payload)?;
        }
        let len = u32::try_from(w.buf.len() + TRAILER_LEN)
            .map_err(|_| CodecError::Invalid("frame over 4 GiB"))?;
        w.buf[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&w.buf);
        w.u32(crc);
        Ok(w.buf)
    }

    /// The total length of the frame that starts `bytes`, read from its header
    /// (checks the magic and version, not the checksum).
    pub fn peek_len(bytes: &[u8]) -> Result<usize, CodecError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return Err(CodecError::BadMagic);
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        let _shard = r.u16()?;
        let len = r.u32()? as usize;
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(CodecError::Invalid("frame length shorter than a header"));
        }
        Ok(len)
    }

    /// Checks the frame that starts `bytes` (header, length, checksum) without
    /// decoding its records, and returns its shard, lsn and total length. Used to
    /// walk a segment file and find where a torn tail starts.
    pub fn verify(bytes: &[u8]) -> Result<(ShardId, u64, usize), CodecError> {
        let len = Self::peek_len(bytes)?;
        if bytes.len() < len {
            return Err(CodecError::Truncated {
                needed: len - bytes.len(),
            });
        }
        let (covered, trailer) = bytes[..len].split_at(len - TRAILER_LEN);
        // unwrap: `split_at` left exactly TRAILER_LEN (4) bytes.
        let stored = u32::from_le_bytes(trailer.try_into().unwrap());
        let computed = checksum(covered);
        if stored != computed {
            return Err(CodecError::Checksum { stored, computed });
        }
        let mut r = Reader::new(covered);
        r.take(6)?;
        let shard = ShardId(r.u16()?);
        r.u32()?;
        Ok((shard, r.u64()?, len))
    }

    /// Decodes exactly one frame (all of `bytes`), checksum first.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let len = Self::peek_len(bytes)?;
        if bytes.len() < len {
            return Err(CodecError::Truncated {
                needed: len - bytes.len(),
            });
        }
        if bytes.len() > len {
            return Err(CodecError::Invalid("trailing bytes after the frame"));
        }
        let (covered, trailer) = bytes.split_at(len - TRAILER_LEN);
        // unwrap: `split_at` left exactly TRAILER_LEN (4) bytes.
        let stored = u32::from_le_bytes(trailer.try_into().unwrap());
        let computed = checksum(covered);
        if stored != computed {
            return Err(CodecError::Checksum { stored, computed });
        }
        let mut r = Reader::new(covered);
        r.take(6)?; // magic and version, checked by peek_len
        let shard = ShardId(r.u16()?);
        r.u32()?;
        let lsn = r.u64()?;
        let count = r.u32()? as usize;
        // Each record is at least 21 bytes: a corrupt count cannot make us allocate.
        if count > r.remaining() / 21 {
            return Err(CodecError::Invalid("record count exceeds the frame"));
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = RecordKind::from_tag(r.u8()?)?;
            let account = AccountId(r.u64()?);
            let seq = r.u64()?;
            let payload = r.bytes()?.to_vec();
            records.push(LogRecord {
                kind,
                account,
                seq,
                payload,
            });
        }
        if r.remaining() != 0 {
            return Err(CodecError::Invalid("bytes after the last record"));
        }
        Ok(BatchFrame {
            shard,
            lsn,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchFrame {
        BatchFrame {
            shard: ShardId(7),
            lsn: 42,
            records: vec![
                LogRecord {
                    kind: RecordKind::Events,
                    account: AccountId(0x0102_0304_0506_0708),
                    seq: 3,
                    payload: vec![0xaa, 0xbb],
                },
                LogRecord {
                    kind: RecordKind::CreditWatermark,
                    account: AccountId(5),
                    seq: 9,
                    payload: vec![],
                },
            ],
        }
    }

    /// Golden bytes of format version 1. If this test fails, a log written by an
    /// earlier build would be misread: add a version instead of changing this one.
    /// The checksum was computed independently (Python's `zlib.crc32`).
    const GOLDEN: &[u8] = &[
        b'O',
        b'K',
        b'P',
        b'L',
        1,
        0,
        7,
        0,
        72,
        0,
        0,
        0, // magic, version, shard, len
        42,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        2,
        0,
        0,
        0, // lsn, count
        1,
        8,
        7,
        6,
        5,
        4,
        3,
        2,
        1,
        3,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        2,
        0,
        0,
        0,
        0xaa,
        0xbb, // record 1
        2,
        5,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        9,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // record 2
        GOLDEN_CRC[0],
        GOLDEN_CRC[1],
        GOLDEN_CRC[2],
        GOLDEN_CRC[3],
    ];
    const GOLDEN_CRC: [u8; 4] = 0x69e3_23e5u32.to_le_bytes();

    #[test]
    fn golden_bytes_of_version_1() {
        assert_eq!(sample().encode().unwrap(), GOLDEN);
        assert_eq!(BatchFrame::decode(GOLDEN).unwrap(), sample());
        assert_eq!(BatchFrame::peek_len(GOLDEN).unwrap(), GOLDEN.len());
        let mut two = GOLDEN.to_vec();
        two.extend_from_slice(GOLDEN);
        assert_eq!(
            BatchFrame::verify(&two).unwrap(),
            (ShardId(7), 42, GOLDEN.len())
        );
    }

    #[test]
    fn record_kind_tags_are_explicit() {
        assert_eq!(RecordKind::Events.tag(), 1);
        assert_eq!(RecordKind::CreditWatermark.tag(), 2);
        for tag in [0u8, 3, 255] {
            assert!(RecordKind::from_tag(tag).is_err());
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let bytes = sample().encode().unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(BatchFrame::decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn torn_frames_and_other_versions_are_refused() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(BatchFrame::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            assert!(BatchFrame::verify(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = bytes.clone();
        v2[4] = 2;
        assert_eq!(
            BatchFrame::peek_len(&v2),
            Err(CodecError::UnknownVersion(2))
        );
        assert!(BatchFrame::decode(&v2).is_err());
    }

    #[test]
    fn empty_frame_round_trips() {
        let f = BatchFrame {
            shard: ShardId(0),
            lsn: 1,
            records: vec![],
        };
        let bytes = f.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
        assert_eq!(BatchFrame::decode(&bytes).unwrap(), f);
    }
}
