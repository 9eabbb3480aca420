//! A batch frame: everything one shard appends to its log in one write — the
//! records of every command decided for that shard's accounts in one executor
//! batch. Layout of format version 2, written since 2026-11-30 (integers
//! little-endian; `varint` is unsigned LEB128, at most 10 bytes):
//!
//! ```text
//! magic "OKPL" | version u16 (= 2) | shard u16 | frame length u32 | lsn u64 | count u32
//! compression u8, then the record section:
//!   0 (raw):  the records
//!   1 (LZ4):  records length u32 | one LZ4 block of the records
//!   2 (zstd): records length u32 | one zstd frame of the records (since 2026-12-01)
//! crc32 u32   (IEEE, over every byte before it)
//!
//! records: count × ( kind u8 | account u64 | seq varint | payload length varint | payload )
//! ```
//!
//! Format version 1 (every frame written before) still reads; it has no
//! compression byte, and its records are stored raw with fixed-width headers:
//!
//! ```text
//! magic "OKPL" | version u16 (= 1) | shard u16 | frame length u32 | lsn u64 | count u32
//! count × ( kind u8 | account u64 | seq u64 | payload length u32 | payload )
//! crc32 u32
//! ```
//!
//! `lsn` is the frame's position in its shard's log (1, 2, 3, ...): the store
//! appends a frame only if it is exactly the shard's head + 1, which fences out a
//! stale writer. The frame length up front lets a reader walk a segment file frame
//! by frame and stop at a torn tail; [`BatchFrame::verify`] does so without
//! decompressing anything.
//!
//! Why version 2: a transfer is three records, and version 1 spent 21 bytes of
//! header on each before its payload (postcard events, whose ids, currencies and
//! timestamps repeat from record to record). Varints make a header 11–14 bytes
//! (account ids are random 64-bit numbers, so the account stays fixed-width: a
//! varint of one would be 9–10 bytes), and one compressed block over the whole
//! record section takes the repetition out: LZ4 until 2026-12-01, zstd since
//! (a tenth smaller; see `compress.rs`), chosen by the writer's
//! [`Compression`] and named by the compression byte. The writer stores the
//! section raw when compression does not make it smaller (tiny frames, e.g. an
//! empty checkpoint marker).
//! Every length read from stored bytes is bounded before anything is allocated.

use std::cell::RefCell;

use super::compress::Compression;
use super::shard::ShardId;
use super::wire::{put_varint, Reader, Writer};
use super::CodecError;
use crate::ids::AccountId;

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"OKPL";
/// The frame format this build writes (it reads 1 and 2).
pub const FORMAT_VERSION: u16 = 2;
/// The first format, still read (logs written before 2026-11-30).
const VERSION_1: u16 = 1;
/// Bytes before the first record of a version-1 frame, and before the
/// compression byte of a version-2 frame: the part every version shares.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 4 + 8 + 4;
/// Bytes after the last record (the checksum).
pub const TRAILER_LEN: usize = 4;
/// The record section is stored as it is.
const COMPRESSION_NONE: u8 = 0;
/// The record section is one LZ4 block, after its uncompressed length (u32).
const COMPRESSION_LZ4: u8 = 1;
/// The record section is one zstd frame, after its uncompressed length (u32).
const COMPRESSION_ZSTD: u8 = 2;
/// The largest record section a compressed frame may claim to hold: far above
/// any bounded batch (`max_batch` records), so a corrupted length is refused
/// instead of allocated. The writer stores a larger section raw.
const MAX_SECTION_BYTES: usize = 64 << 20;
/// The fewest bytes a version-2 record takes (kind, account, a one-byte seq
/// and length, no payload): bounds the count a section can hold.
const MIN_RECORD_V2: usize = 1 + 8 + 1 + 1;
/// The same for version 1 (fixed-width header, no payload).
const MIN_RECORD_V1: usize = 1 + 8 + 8 + 4;
/// A thread's scratch section is given back past this size, so one huge batch
/// does not pin its memory for the life of an executor thread.
const SCRATCH_KEEP_BYTES: usize = 4 << 20;

thread_local! {
    /// The uncompressed record section being encoded, reused frame after frame
    /// (the executors encode every frame of every batch on their own threads).
    static SECTION: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a log record holds. Tags are explicit and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The events of one command on `account`, its journal `seq`, in events
    /// format 1: postcard of the domain types (written before 2026-11-30's
    /// seventh session, and by a node pinned to it: see [`super::events`]).
    Events,
    /// Reserved for a watermark record (source shard `account`, lsn `seq`,
    /// empty payload). Never written: the saga's watermarks travel with its
    /// requests and are kept in shard checkpoints instead (see `runtime::saga`);
    /// readers skip it.
    CreditWatermark,
    /// The same as [`RecordKind::Events`] in events format 2 ([`super::events`]):
    /// explicit tags, amounts in minor units.
    EventsV2,
}

impl RecordKind {
    pub fn tag(self) -> u8 {
        match self {
            RecordKind::Events => 1,
            RecordKind::CreditWatermark => 2,
            RecordKind::EventsV2 => 3,
        }
    }

    /// Whether the payload is a command's events (of either format).
    pub fn holds_events(self) -> bool {
        matches!(self, RecordKind::Events | RecordKind::EventsV2)
    }

    pub fn from_tag(tag: u8) -> Result<Self, CodecError> {
        match tag {
            1 => Ok(RecordKind::Events),
            2 => Ok(RecordKind::CreditWatermark),
            3 => Ok(RecordKind::EventsV2),
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

/// The header every version shares, with the frame length left 0 (patched once
/// known).
fn write_header(w: &mut Writer, version: u16, frame: &BatchFrame) -> Result<(), CodecError> {
    w.buf.extend_from_slice(&MAGIC);
    w.u16(version);
    w.u16(frame.shard.0);
    w.u32(0);
    w.u64(frame.lsn);
    let count = u32::try_from(frame.records.len())
        .map_err(|_| CodecError::Invalid("too many records in one frame"))?;
    w.u32(count);
    Ok(())
}

/// Patches the frame length into the header and appends the checksum.
fn seal(mut w: Writer) -> Result<Vec<u8>, CodecError> {
    let len = u32::try_from(w.buf.len() + TRAILER_LEN)
        .map_err(|_| CodecError::Invalid("frame over 4 GiB"))?;
    w.buf[8..12].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&w.buf);
    w.u32(crc);
    Ok(w.buf)
}

/// Appends the version-2 form of `records` to `section`.
fn write_records(section: &mut Vec<u8>, records: &[LogRecord]) {
    for r in records {
        section.push(r.kind.tag());
        section.extend_from_slice(&r.account.0.to_le_bytes());
        put_varint(section, r.seq);
        put_varint(section, r.payload.len() as u64);
        section.extend_from_slice(&r.payload);
    }
}

/// The frame's header fields, as read by [`BatchFrame::peek_len`].
struct Header {
    version: u16,
    len: usize,
}

impl BatchFrame {
    /// The frame's bytes, in format version 2, its records compressed with zstd
    /// (the default [`Compression`]). Fails only for a frame over 4 GiB.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.encode_as(Compression::default())
    }

    /// The frame's bytes, in format version 2, its records compressed with
    /// `compression` (or stored raw where that does not make them smaller).
    pub fn encode_as(&self, compression: Compression) -> Result<Vec<u8>, CodecError> {
        SECTION.with(|cell| {
            // A re-entrant call cannot happen (encoding calls nothing back), but
            // if it did, a fresh buffer is correct too.
            match cell.try_borrow_mut() {
                Ok(mut section) => {
                    let out = self.encode_with(&mut section, compression);
                    section.clear();
                    if section.capacity() > SCRATCH_KEEP_BYTES {
                        *section = Vec::new();
                    }
                    out
                }
                Err(_) => self.encode_with(&mut Vec::new(), compression),
            }
        })
    }

    fn encode_with(
        &self,
        section: &mut Vec<u8>,
        compression: Compression,
    ) -> Result<Vec<u8>, CodecError> {
        section.clear();
        write_records(section, &self.records);
        let raw = section.len();
        let bound = match compression {
            Compression::Lz4 => lz4_flex::block::get_maximum_output_size(raw),
            Compression::Zstd => super::compress::zstd_bound(raw),
        };
        let mut w = Writer::with_capacity(HEADER_LEN + 1 + 4 + bound.max(raw) + TRAILER_LEN);
        write_header(&mut w, FORMAT_VERSION, self)?;
        let tag_at = w.buf.len();
        w.u8(COMPRESSION_NONE);
        if raw > 0 && raw <= MAX_SECTION_BYTES {
            let at = w.buf.len();
            // unwrap-free: `raw` ≤ MAX_SECTION_BYTES, far below 4 GiB.
            w.u32(raw as u32);
            w.buf.resize(at + 4 + bound, 0);
            let out = &mut w.buf[at + 4..];
            let (n, tag) = match compression {
                Compression::Lz4 => (
                    lz4_flex::block::compress_into(section, out).ok(),
                    COMPRESSION_LZ4,
                ),
                Compression::Zstd => (
                    super::compress::zstd_into(section, super::compress::FRAME_LEVEL, out),
                    COMPRESSION_ZSTD,
                ),
            };
            // Worth it only when the compressed records and their length are
            // smaller than the records.
            if let Some(n) = n.filter(|n| n + 4 < raw) {
                w.buf.truncate(at + 4 + n);
                w.buf[tag_at] = tag;
            } else {
                w.buf.truncate(at);
            }
        }
        if w.buf[tag_at] == COMPRESSION_NONE {
            w.buf.extend_from_slice(section);
        }
        seal(w)
    }

    /// The frame's bytes in format version 1, as every build before 2026-11-30
    /// wrote them. Only for tests that show old logs still read.
    #[doc(hidden)]
    pub fn encode_version_1(&self) -> Result<Vec<u8>, CodecError> {
        let body: usize = self
            .records
            .iter()
            .map(|r| MIN_RECORD_V1 + r.payload.len())
            .sum();
        let mut w = Writer::with_capacity(HEADER_LEN + body + TRAILER_LEN);
        write_header(&mut w, VERSION_1, self)?;
        for r in &self.records {
            w.u8(r.kind.tag());
            w.u64(r.account.0);
            w.u64(r.seq);
            w.bytes(&r.payload)?;
        }
        seal(w)
    }

    fn header(bytes: &[u8]) -> Result<Header, CodecError> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return Err(CodecError::BadMagic);
        }
        let version = r.u16()?;
        let min = match version {
            VERSION_1 => HEADER_LEN + TRAILER_LEN,
            FORMAT_VERSION => HEADER_LEN + 1 + TRAILER_LEN,
            v => return Err(CodecError::UnknownVersion(v)),
        };
        let _shard = r.u16()?;
        let len = r.u32()? as usize;
        if len < min {
            return Err(CodecError::Invalid("frame length shorter than a header"));
        }
        Ok(Header { version, len })
    }

    /// The total length of the frame that starts `bytes`, read from its header
    /// (checks the magic and version, not the checksum).
    pub fn peek_len(bytes: &[u8]) -> Result<usize, CodecError> {
        Ok(Self::header(bytes)?.len)
    }

    /// The frame that starts `bytes`, checksum checked: its version and the
    /// bytes the checksum covers.
    fn checked(bytes: &[u8]) -> Result<(u16, &[u8]), CodecError> {
        let Header { version, len } = Self::header(bytes)?;
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
        Ok((version, covered))
    }

    /// Checks the frame that starts `bytes` (header, length, checksum) without
    /// decoding its records, and returns its shard, lsn and total length. Used to
    /// walk a segment file and find where a torn tail starts.
    pub fn verify(bytes: &[u8]) -> Result<(ShardId, u64, usize), CodecError> {
        let (_, covered) = Self::checked(bytes)?;
        let mut r = Reader::new(covered);
        r.take(6)?;
        let shard = ShardId(r.u16()?);
        r.u32()?;
        Ok((shard, r.u64()?, covered.len() + TRAILER_LEN))
    }

    /// Decodes exactly one frame (all of `bytes`), checksum first.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (version, covered) = Self::checked(bytes)?;
        if bytes.len() > covered.len() + TRAILER_LEN {
            return Err(CodecError::Invalid("trailing bytes after the frame"));
        }
        let mut r = Reader::new(covered);
        r.take(6)?; // magic and version, checked by `header`
        let shard = ShardId(r.u16()?);
        r.u32()?;
        let lsn = r.u64()?;
        let count = r.u32()? as usize;
        let records = if version == VERSION_1 {
            read_records_v1(&mut r, count)?
        } else {
            match r.u8()? {
                COMPRESSION_NONE => read_records_v2(&mut r, count)?,
                tag @ (COMPRESSION_LZ4 | COMPRESSION_ZSTD) => {
                    let section = decompress(&mut r, tag)?;
                    read_records_v2(&mut Reader::new(&section), count)?
                }
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "frame compression",
                        tag,
                    })
                }
            }
        };
        Ok(BatchFrame {
            shard,
            lsn,
            records,
        })
    }
}

/// The rest of `r`: a records length and an LZ4 block or a zstd frame (`tag`)
/// that must decompress to exactly that many bytes.
fn decompress(r: &mut Reader<'_>, tag: u8) -> Result<Vec<u8>, CodecError> {
    let len = r.u32()? as usize;
    let block = r.take(r.remaining())?;
    if len > MAX_SECTION_BYTES {
        return Err(CodecError::Invalid("frame records claim more than 64 MiB"));
    }
    if tag == COMPRESSION_ZSTD {
        // The checksum has passed, so the length is the writer's: at most 64 MiB
        // (above), and the frame must fill exactly that.
        return super::compress::zstd_expand(block, len, "frame records do not decompress");
    }
    // An LZ4 block expands at most ~255-fold (a match's length bytes each add
    // 255 output bytes): a larger claim is corrupt, whatever the bound above.
    if len > block.len().saturating_mul(256).saturating_add(64) {
        return Err(CodecError::Invalid(
            "frame records claim more than their block can hold",
        ));
    }
    let mut section = vec![0u8; len];
    match lz4_flex::block::decompress_into(block, &mut section) {
        Ok(n) if n == len => Ok(section),
        Ok(_) => Err(CodecError::Invalid("frame records have the wrong length")),
        Err(_) => Err(CodecError::Invalid("frame records do not decompress")),
    }
}

/// `count` version-2 records: all of `r`, nothing left over.
fn read_records_v2(r: &mut Reader<'_>, count: usize) -> Result<Vec<LogRecord>, CodecError> {
    read_records(r, count, MIN_RECORD_V2, |r| {
        let seq = r.varint()?;
        let len = usize::try_from(r.varint()?)
            .map_err(|_| CodecError::Invalid("record payload length out of range"))?;
        Ok((seq, r.take(len)?))
    })
}

/// `count` version-1 records: all of `r`, nothing left over.
fn read_records_v1(r: &mut Reader<'_>, count: usize) -> Result<Vec<LogRecord>, CodecError> {
    read_records(r, count, MIN_RECORD_V1, |r| Ok((r.u64()?, r.bytes()?)))
}

/// `count` records of at least `min_record` bytes each, all of `r`: each a kind
/// tag and an account, then what `seq_payload` reads (the two versions differ
/// only there).
fn read_records<'a>(
    r: &mut Reader<'a>,
    count: usize,
    min_record: usize,
    seq_payload: impl Fn(&mut Reader<'a>) -> Result<(u64, &'a [u8]), CodecError>,
) -> Result<Vec<LogRecord>, CodecError> {
    // A corrupt count cannot make us allocate: each record takes some bytes.
    if count > r.remaining() / min_record {
        return Err(CodecError::Invalid("record count exceeds the frame"));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = RecordKind::from_tag(r.u8()?)?;
        let account = AccountId(r.u64()?);
        let (seq, payload) = seq_payload(r)?;
        records.push(LogRecord {
            kind,
            account,
            seq,
            payload: payload.to_vec(),
        });
    }
    if r.remaining() != 0 {
        return Err(CodecError::Invalid("bytes after the last record"));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// A frame whose records repeat themselves, as a batch's do (ids, currency,
    /// amounts, timestamps): stored as an LZ4 block.
    fn compressible() -> BatchFrame {
        let payload = b"transfer CNY 12.50 acc_1a91e3a2a97226b6 -> acc_067802d95c42618c".to_vec();
        BatchFrame {
            shard: ShardId(3),
            lsn: 300,
            records: (0..3u64)
                .map(|i| LogRecord {
                    kind: RecordKind::Events,
                    account: AccountId(0x1a91_e3a2_a972_26b6),
                    seq: 200 + i,
                    payload: payload.clone(),
                })
                .collect(),
        }
    }

    /// Recomputes the frame length and checksum of `bytes` (a frame, edited), so
    /// a test reaches the checks that stand behind the checksum.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.truncate(bytes.len() - TRAILER_LEN);
        let len = (bytes.len() + TRAILER_LEN) as u32;
        bytes[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Bytes written as hex, one field per group, `#` starting a comment.
    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|part| part.chars().filter(|c| !c.is_whitespace()))
            .collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Golden bytes of format version 1 (every frame written before
    /// 2026-11-30). If this test fails, an old log would be misread: add a
    /// version instead of changing this one. The checksum was computed
    /// independently (Python's `zlib.crc32`).
    const GOLDEN_V1: &str = "
        4f4b504c 0100 0700 48000000          # magic, version 1, shard 7, length 72
        2a00000000000000 02000000            # lsn 42, count 2
        01 0807060504030201 0300000000000000 02000000 aabb  # kind, account, seq, length, payload
        02 0500000000000000 0900000000000000 00000000       # the watermark, empty
        e523e369                             # crc32
    ";

    /// Golden bytes of format version 2, record section stored raw (two records
    /// too small for LZ4 to shrink). Pinned both ways: a build writes exactly
    /// these bytes for `sample()` and reads them back as it. The checksum was
    /// computed independently (Python's `zlib.crc32`).
    const GOLDEN_V2_RAW: &str = "
        4f4b504c 0200 0700 35000000          # magic, version 2, shard 7, length 53
        2a00000000000000 02000000            # lsn 42, count 2
        00                                   # compression: none
        01 0807060504030201 03 02 aabb       # kind, account, seq varint, length varint, payload
        02 0500000000000000 09 00            # the watermark, empty
        53b8316f                             # crc32
    ";

    /// Golden bytes of format version 2 with an LZ4 record section, as this
    /// build wrote `compressible()`. Decoding is pinned exactly; the block
    /// itself was checked by an independent LZ4 decoder (a few lines of Python
    /// over the block format) to expand to the three records, and the checksum
    /// with `zlib.crc32`.
    const GOLDEN_V2_LZ4: &str = "
        4f4b504c 0200 0300 80000000          # magic, version 2, shard 3, length 128
        2c01000000000000 03000000            # lsn 300, count 3
        01 e1000000                          # compression: LZ4, records length 225
        f12701b62672a9a2e3911ac8013f7472616e7366657220434e592031322e3530
        206163635f31613931653361326139373232366236202d3e1800f50130363738
        3032643935633432363138634b001fc94b00371fca4b0028603432363138
        63                                   # (the block ends)
        54b05bc9                             # crc32
    ";

    /// Golden bytes of format version 2 with a zstd record section (written
    /// since 2026-12-01), as this build writes `compressible()`. The frame was
    /// checked independently: Python's `zstandard` expands it to the three
    /// records, and `zlib.crc32` gives its checksum.
    const GOLDEN_V2_ZSTD: &str = "
        4f4b504c 0200 0300 81000000          # magic, version 2, shard 3, length 129
        2c01000000000000 03000000            # lsn 300, count 3
        02 e1000000                          # compression: zstd, records length 225
        28b52ffd 0000                        # zstd magic, frame header (no size, no checksum)
        bd0200840401b62672a9a2e3911ac8013f7472616e7366657220434e592031322e3530
        206163635f31613931653361326139373232366236202d3e303637383032643935
        63343236313863c9ca040006921ca0cb09ba6cdb0905   # (the frame ends)
        edfa6a51                             # crc32
    ";

    #[test]
    fn golden_bytes_of_version_1() {
        let golden = hex(GOLDEN_V1);
        assert_eq!(BatchFrame::decode(&golden).unwrap(), sample());
        assert_eq!(sample().encode_version_1().unwrap(), golden);
        assert_eq!(BatchFrame::peek_len(&golden).unwrap(), golden.len());
        let mut two = golden.clone();
        two.extend_from_slice(&golden);
        assert_eq!(
            BatchFrame::verify(&two).unwrap(),
            (ShardId(7), 42, golden.len())
        );
    }

    #[test]
    fn golden_bytes_of_version_2_raw() {
        let golden = hex(GOLDEN_V2_RAW);
        assert_eq!(sample().encode().unwrap(), golden);
        assert_eq!(BatchFrame::decode(&golden).unwrap(), sample());
        assert_eq!(BatchFrame::peek_len(&golden).unwrap(), golden.len());
        assert_eq!(
            BatchFrame::verify(&golden).unwrap(),
            (ShardId(7), 42, golden.len())
        );
    }

    #[test]
    fn golden_bytes_of_version_2_lz4() {
        let golden = hex(GOLDEN_V2_LZ4);
        assert_eq!(BatchFrame::decode(&golden).unwrap(), compressible());
        assert_eq!(golden[HEADER_LEN], COMPRESSION_LZ4);
        // What this build writes: the same header, and bytes that read back the
        // same. (Another LZ4 encoder may pick other, equally valid matches, so
        // the block is pinned by decoding only.)
        let ours = compressible().encode_as(Compression::Lz4).unwrap();
        assert_eq!(ours[..HEADER_LEN + 5], golden[..HEADER_LEN + 5]);
        assert_eq!(BatchFrame::decode(&ours).unwrap(), compressible());
        assert!(ours.len() < compressible().encode_version_1().unwrap().len() / 2);
    }

    #[test]
    fn golden_bytes_of_version_2_zstd() {
        let golden = hex(GOLDEN_V2_ZSTD);
        assert_eq!(BatchFrame::decode(&golden).unwrap(), compressible());
        assert_eq!(golden[HEADER_LEN], COMPRESSION_ZSTD);
        // What this build writes by default. Decoding is what old logs need and
        // is pinned above; the bytes below hold while the zstd library pinned
        // by `Cargo.lock` compresses this input the same way (an upgrade that
        // changes them is not a format change: update this line, not the golden).
        let ours = compressible().encode().unwrap();
        assert_eq!(ours, golden);
        assert!(ours.len() < compressible().encode_version_1().unwrap().len() / 2);
        // A frame too small to shrink is stored raw whatever the compression.
        for c in [Compression::Lz4, Compression::Zstd] {
            assert_eq!(sample().encode_as(c).unwrap(), hex(GOLDEN_V2_RAW));
        }
    }

    #[test]
    fn a_zstd_section_that_expands_to_another_length_is_refused() {
        let good = compressible().encode().unwrap();
        let at = HEADER_LEN + 1;
        for len in [224u32, 226, 64 << 20, (64 << 20) + 1] {
            let mut bad = good.clone();
            bad[at..at + 4].copy_from_slice(&len.to_le_bytes());
            assert!(BatchFrame::decode(&reseal(bad)).is_err(), "length {len}");
        }
    }

    #[test]
    fn a_segment_of_both_versions_walks_frame_by_frame() {
        let mut segment = sample().encode_version_1().unwrap();
        let v2 = compressible().encode().unwrap();
        segment.extend_from_slice(&v2);
        let (shard, lsn, len) = BatchFrame::verify(&segment).unwrap();
        assert_eq!((shard, lsn), (ShardId(7), 42));
        assert_eq!(
            BatchFrame::verify(&segment[len..]).unwrap(),
            (ShardId(3), 300, v2.len())
        );
        assert_eq!(BatchFrame::decode(&segment[len..]).unwrap(), compressible());
    }

    #[test]
    fn record_kind_tags_are_explicit() {
        assert_eq!(RecordKind::Events.tag(), 1);
        assert_eq!(RecordKind::CreditWatermark.tag(), 2);
        assert_eq!(RecordKind::EventsV2.tag(), 3);
        for kind in [
            RecordKind::Events,
            RecordKind::CreditWatermark,
            RecordKind::EventsV2,
        ] {
            assert_eq!(RecordKind::from_tag(kind.tag()), Ok(kind));
        }
        for tag in [0u8, 4, 255] {
            assert!(RecordKind::from_tag(tag).is_err());
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        for bytes in [
            sample().encode().unwrap(),
            compressible().encode().unwrap(),
            sample().encode_version_1().unwrap(),
        ] {
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut bad = bytes.clone();
                    bad[i] ^= 1 << bit;
                    assert!(BatchFrame::decode(&bad).is_err(), "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn torn_frames_and_other_versions_are_refused() {
        for bytes in [sample().encode().unwrap(), compressible().encode().unwrap()] {
            for cut in 0..bytes.len() {
                assert!(BatchFrame::decode(&bytes[..cut]).is_err(), "cut at {cut}");
                assert!(BatchFrame::verify(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut v3 = bytes.clone();
            v3[4] = 3;
            assert_eq!(
                BatchFrame::peek_len(&v3),
                Err(CodecError::UnknownVersion(3))
            );
            assert!(BatchFrame::decode(&v3).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(BatchFrame::decode(&longer).is_err());
        }
    }

    #[test]
    fn empty_frame_round_trips() {
        let f = BatchFrame {
            shard: ShardId(0),
            lsn: 1,
            records: vec![],
        };
        let bytes = f.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 1 + TRAILER_LEN);
        assert_eq!(bytes[HEADER_LEN], COMPRESSION_NONE);
        assert_eq!(BatchFrame::decode(&bytes).unwrap(), f);
    }

    /// Where the LZ4 frame's records length sits, and where its block starts.
    const LZ4_LEN_AT: usize = HEADER_LEN + 1;

    #[test]
    fn corrupted_records_length_is_refused_not_allocated() {
        let good = compressible().encode().unwrap();
        let raw = u32::from_le_bytes(good[LZ4_LEN_AT..LZ4_LEN_AT + 4].try_into().unwrap());
        for claimed in [
            u32::MAX,
            (MAX_SECTION_BYTES + 1) as u32,
            1 << 20,
            raw + 1,
            raw - 1,
            0,
        ] {
            let mut bad = good.clone();
            bad[LZ4_LEN_AT..LZ4_LEN_AT + 4].copy_from_slice(&claimed.to_le_bytes());
            let err = BatchFrame::decode(&reseal(bad)).unwrap_err();
            assert!(matches!(err, CodecError::Invalid(_)), "{claimed}: {err:?}");
        }
    }

    #[test]
    fn torn_block_is_refused() {
        let good = compressible().encode().unwrap();
        let block_end = good.len() - TRAILER_LEN;
        for cut in 1..(block_end - LZ4_LEN_AT - 4) {
            let mut torn = good[..block_end - cut].to_vec();
            torn.extend_from_slice(&[0; TRAILER_LEN]);
            assert!(BatchFrame::decode(&reseal(torn)).is_err(), "cut {cut}");
        }
        // Any byte of the block corrupted behind a valid checksum: an error or
        // some frame (a literal changed into another literal reads), never a
        // panic or an allocation beyond the stated length.
        for i in LZ4_LEN_AT + 4..block_end {
            for delta in [1u8, 0x5b, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = bad[i].wrapping_add(delta);
                let _ = BatchFrame::decode(&reseal(bad));
            }
        }
    }

    #[test]
    fn unknown_compression_tag_is_refused() {
        for tag in [3u8, 0x7f, 0xff] {
            let mut bad = sample().encode().unwrap();
            bad[HEADER_LEN] = tag;
            assert_eq!(
                BatchFrame::decode(&reseal(bad)),
                Err(CodecError::UnknownTag {
                    what: "frame compression",
                    tag
                })
            );
        }
        // A raw section read as compressed, a compressed one read as raw, and
        // each compression's section read as the other's.
        for tag in [COMPRESSION_LZ4, COMPRESSION_ZSTD] {
            let mut bad = sample().encode().unwrap();
            bad[HEADER_LEN] = tag;
            assert!(BatchFrame::decode(&reseal(bad)).is_err());
        }
        for (c, other) in [
            (Compression::Lz4, COMPRESSION_ZSTD),
            (Compression::Zstd, COMPRESSION_LZ4),
        ] {
            let good = compressible().encode_as(c).unwrap();
            for tag in [COMPRESSION_NONE, other] {
                let mut bad = good.clone();
                bad[HEADER_LEN] = tag;
                assert!(BatchFrame::decode(&reseal(bad)).is_err(), "{c:?} as {tag}");
            }
        }
    }

    #[test]
    fn corrupted_counts_and_varints_are_refused() {
        const COUNT_AT: usize = HEADER_LEN - 4;
        for version in [1, 2] {
            for count in [u32::MAX, 1 << 28, 3, 1, 0] {
                let mut bad = if version == 1 {
                    sample().encode_version_1().unwrap()
                } else {
                    sample().encode().unwrap()
                };
                bad[COUNT_AT..HEADER_LEN].copy_from_slice(&count.to_le_bytes());
                assert!(
                    BatchFrame::decode(&reseal(bad)).is_err(),
                    "version {version} count {count}"
                );
            }
        }
        // Record 1's seq (3) as an 11-byte varint: over 64 bits.
        let good = sample().encode().unwrap();
        let seq_at = HEADER_LEN + 1 + 1 + 8;
        assert_eq!(good[seq_at], 3);
        let mut bad = good[..seq_at].to_vec();
        bad.extend_from_slice(&[
            0x83, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ]);
        bad.extend_from_slice(&good[seq_at + 1..]);
        assert!(BatchFrame::decode(&reseal(bad)).is_err());
        // A payload length beyond the section.
        let mut bad = good.clone();
        bad[seq_at + 1] = 0x7f;
        assert!(BatchFrame::decode(&reseal(bad)).is_err());
    }

    #[test]
    fn incompressible_and_large_frames_round_trip() {
        // Payloads of pseudo-random bytes: LZ4 can't shrink them, stored raw.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let noisy = BatchFrame {
            shard: ShardId(u16::MAX),
            lsn: u64::MAX,
            records: vec![LogRecord {
                kind: RecordKind::Events,
                account: AccountId(0x0123_4567_89ab_cdef),
                // A 9-byte varint.
                seq: 0x0123_4567_89ab_cdef,
                payload: noise(1000),
            }],
        };
        let bytes = noisy.encode().unwrap();
        assert_eq!(bytes[HEADER_LEN], COMPRESSION_NONE);
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 1 + 1 + 8 + 9 + 2 + 1000 + TRAILER_LEN
        );
        assert_eq!(BatchFrame::decode(&bytes).unwrap(), noisy);
        // Many records, seqs and lengths of every varint width.
        let records: Vec<LogRecord> = (0..50u64)
            .map(|i| LogRecord {
                kind: RecordKind::Events,
                account: AccountId(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                seq: if i % 2 == 0 {
                    u64::MAX - i
                } else {
                    i << (i % 64)
                },
                payload: noise(100 + i as usize * 7),
            })
            .collect();
        let many = BatchFrame {
            shard: ShardId(2),
            lsn: 9,
            records,
        };
        let bytes = many.encode().unwrap();
        assert_eq!(BatchFrame::decode(&bytes).unwrap(), many);
        // The same thread then encodes a small frame: nothing of the large one
        // is left in the reused scratch.
        assert_eq!(sample().encode().unwrap(), hex(GOLDEN_V2_RAW));
        // A batch-sized frame of similar records compresses.
        let big = BatchFrame {
            shard: ShardId(1),
            lsn: 1,
            records: (0..8192u64)
                .map(|i| LogRecord {
                    kind: RecordKind::Events,
                    account: AccountId(i * 7919 + 1),
                    seq: i,
                    payload: format!("debit {i} CNY 12.50 at 2026-11-30T00:00:{:02}Z", i % 60)
                        .into_bytes(),
                })
                .collect(),
        };
        for (c, tag) in [
            (Compression::Lz4, COMPRESSION_LZ4),
            (Compression::Zstd, COMPRESSION_ZSTD),
        ] {
            let bytes = big.encode_as(c).unwrap();
            assert_eq!(bytes[HEADER_LEN], tag);
            assert_eq!(BatchFrame::decode(&bytes).unwrap(), big);
        }
    }

    fn any_record() -> impl Strategy<Value = LogRecord> {
        (
            prop::bool::ANY,
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(prop::sample::select(vec![0u8, 1, 7, 0x80, 0xff]), 0..300),
        )
            .prop_map(|(watermark, account, seq, payload)| LogRecord {
                kind: if watermark {
                    RecordKind::CreditWatermark
                } else {
                    RecordKind::Events
                },
                account: AccountId(account),
                seq,
                payload,
            })
    }

    proptest! {
        #[test]
        fn any_frame_round_trips(
            shard in any::<u16>(),
            lsn in any::<u64>(),
            records in prop::collection::vec(any_record(), 0..40),
        ) {
            let frame = BatchFrame { shard: ShardId(shard), lsn, records };
            let bytes = frame.encode().unwrap();
            prop_assert_eq!(BatchFrame::verify(&bytes).unwrap(), (frame.shard, lsn, bytes.len()));
            prop_assert_eq!(&BatchFrame::decode(&bytes).unwrap(), &frame);
            let v1 = frame.encode_version_1().unwrap();
            prop_assert_eq!(&BatchFrame::decode(&v1).unwrap(), &frame);
            prop_assert!(bytes.len() <= v1.len() + 1);
        }
    }
}
