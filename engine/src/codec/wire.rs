//! The primitives that the frames are built from: fixed-width little-endian
//! integers, `u32`-length-prefixed bytes, and unsigned LEB128 varints (7 bits a
//! byte, low bits first, the high bit set on every byte but the last; at most
//! 10 bytes for a `u64`). A reader never panics on short or malformed input: it
//! answers [`CodecError::Truncated`] or [`CodecError::Invalid`].

use super::CodecError;

/// Appends `v` to `buf` as an unsigned LEB128 varint (1–10 bytes).
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends primitives to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn varint(&mut self, v: u64) {
        put_varint(&mut self.buf, v);
    }
    /// A `u32` length, then the bytes. Fails beyond 4 GiB (never for one record).
    pub fn bytes(&mut self, v: &[u8]) -> Result<(), CodecError> {
        let len = u32::try_from(v.len()).map_err(|_| CodecError::Invalid("field over 4 GiB"))?;
        self.u32(len);
        self.buf.extend_from_slice(v);
        Ok(())
    }
}

/// Reads primitives from a byte slice, front to back.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// An unsigned LEB128 varint; refuses one that does not fit 64 bits.
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            // The tenth byte holds the top bit alone (7 × 9 = 63 bits before it).
            if i == 9 && b > 1 {
                return Err(CodecError::Invalid("varint over 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Invalid("varint over 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_little_endian_and_fixed_width() {
        let mut w = Writer::default();
        w.u8(1);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.u64(0x0809_0a0b_0c0d_0e0f);
        w.i64(-2);
        w.bytes(b"ab").unwrap();
        let golden: &[u8] = &[
            1, 3, 2, 7, 6, 5, 4, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 0xfe, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, b'a', b'b',
        ];
        assert_eq!(w.buf, golden);
        let mut r = Reader::new(golden);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u32().unwrap(), 0x0405_0607);
        assert_eq!(r.u64().unwrap(), 0x0809_0a0b_0c0d_0e0f);
        assert_eq!(r.i64().unwrap(), -2);
        assert_eq!(r.bytes().unwrap(), b"ab");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn varints_are_leb128() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 1]),
            (300, &[0xac, 2]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 1]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
            ),
        ];
        for &(v, golden) in cases {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(w.buf, golden, "{v}");
            let mut r = Reader::new(golden);
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn malformed_varints_are_refused() {
        // Torn: every byte says another follows.
        assert!(matches!(
            Reader::new(&[0x80, 0x80]).varint(),
            Err(CodecError::Truncated { .. })
        ));
        // Over 64 bits: a tenth byte above 1, or an eleventh byte.
        let mut over = [0xffu8; 10];
        over[9] = 2;
        assert!(Reader::new(&over).varint().is_err());
        let mut eleven = [0x80u8; 11];
        eleven[10] = 0;
        assert!(Reader::new(&eleven).varint().is_err());
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[5, 0, 0, 0, 1]);
        assert_eq!(r.bytes(), Err(CodecError::Truncated { needed: 4 }));
        assert!(Reader::new(&[1]).u64().is_err());
    }
}
