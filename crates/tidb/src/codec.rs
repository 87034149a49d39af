//! TiDB's primitive encodings: comparable integers and floats, Go varints, compact and
//! memcomparable bytes, and a bounds-checked [`Reader`] over them.
//!
//! Comparable forms (used in keys and key datums) preserve order in byte order: a signed integer
//! is `value ^ (1 << 63)` big-endian, an unsigned one plain big-endian, a float its IEEE bits with
//! the sign bit set (non-negative) or all bits inverted (negative). Varints are Go's
//! `binary.PutVarint` (zig-zag, then LEB128) and `PutUvarint` (LEB128).

use alloc::vec::Vec;

use crate::Error;

/// The comparable 8-byte form of a signed integer, and its inverse: `kvfeed-span`'s, which builds
/// the same table keys.
pub use kvfeed_span::table::{decode_int, encode_int};

const SIGN_MASK: u64 = 1 << 63;

/// The comparable 8-byte form of a float.
pub fn encode_float(value: f64) -> [u8; 8] {
    let bits = value.to_bits();
    let bits = if bits & SIGN_MASK == 0 { bits | SIGN_MASK } else { !bits };
    bits.to_be_bytes()
}

/// The inverse of [`encode_float`].
pub fn decode_float(bytes: [u8; 8]) -> f64 {
    let bits = u64::from_be_bytes(bytes);
    let bits = if bits & SIGN_MASK != 0 { bits & !SIGN_MASK } else { !bits };
    f64::from_bits(bits)
}

/// Appends Go's `PutUvarint` form of `value`.
pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends Go's `PutVarint` form (zig-zag) of `value`.
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// A cursor over bytes from a peer: every read is bounds-checked and fails with an [`Error`]
/// naming what was being read, with offsets counted from `base` (the cursor's position inside
/// the whole value or key, so errors point into what the caller holds).
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0, base: 0 }
    }

    /// A reader whose offsets are reported as `base + position`.
    pub fn with_base(bytes: &'a [u8], base: usize) -> Self {
        Self { bytes, pos: 0, base }
    }

    /// The offset of the next byte, as reported in errors.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes { what, offset: self.offset() })
        }
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else { return Err(Error::truncated(what, self.offset())) };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian u16.
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A big-endian u64 (TiDB's `EncodeUint`).
    pub fn u64_be(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A comparable signed integer ([`encode_int`]).
    pub fn comparable_int(&mut self, what: &'static str) -> Result<i64, Error> {
        Ok(decode_int(self.array(what)?))
    }

    /// A comparable float ([`encode_float`]).
    pub fn comparable_float(&mut self, what: &'static str) -> Result<f64, Error> {
        Ok(decode_float(self.array(what)?))
    }

    /// A Go uvarint: at most 10 bytes, the tenth at most 1.
    pub fn uvarint(&mut self, what: &'static str) -> Result<u64, Error> {
        let start = self.offset();
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            if shift == 63 && byte > 1 {
                return Err(Error::invalid(what, start));
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Error::invalid(what, start))
    }

    /// A Go varint (zig-zag).
    pub fn varint(&mut self, what: &'static str) -> Result<i64, Error> {
        let zigzag = self.uvarint(what)?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    /// Compact bytes: a varint length, then the bytes.
    pub fn compact_bytes(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let start = self.offset();
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| Error::invalid(what, start))?;
        self.take(len, what)
    }

    /// Memcomparable bytes (groups of 8 plus a marker), decoded.
    pub fn memcomparable_bytes(&mut self, what: &'static str) -> Result<Vec<u8>, Error> {
        let start = self.offset();
        match kvfeed_span::key::decode_prefix(self.rest()) {
            Ok((raw, rest)) => {
                self.pos = self.bytes.len() - rest.len();
                Ok(raw)
            }
            Err(kvfeed_span::DecodeError::Truncated { offset }) => {
                Err(Error::truncated(what, start + offset))
            }
            Err(
                kvfeed_span::DecodeError::BadMarker { offset, .. }
                | kvfeed_span::DecodeError::BadPadding { offset }
                | kvfeed_span::DecodeError::TrailingBytes { offset },
            ) => Err(Error::invalid(what, start + offset)),
        }
    }
}

/// The little-endian compact form of a signed integer in a v2 row: 1, 2, 4 or 8 bytes, the
/// smallest that holds it.
pub fn put_compact_int(out: &mut Vec<u8>, value: i64) {
    if let Ok(v) = i8::try_from(value) {
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i16::try_from(value) {
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(value) {
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// The little-endian compact form of an unsigned integer in a v2 row.
pub fn put_compact_uint(out: &mut Vec<u8>, value: u64) {
    if let Ok(v) = u8::try_from(value) {
        out.push(v);
    } else if let Ok(v) = u16::try_from(value) {
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Reads a compact signed integer of a v2 row (the whole of `bytes`).
pub fn compact_int(bytes: &[u8], offset: usize) -> Result<i64, Error> {
    Ok(match bytes.len() {
        1 => i64::from(bytes[0] as i8),
        2 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        8 => i64::from_le_bytes(to_array(bytes)),
        _ => return Err(Error::invalid("compact integer (1, 2, 4 or 8 bytes)", offset)),
    })
}

/// Reads a compact unsigned integer of a v2 row (the whole of `bytes`).
pub fn compact_uint(bytes: &[u8], offset: usize) -> Result<u64, Error> {
    Ok(match bytes.len() {
        1 => u64::from(bytes[0]),
        2 => u64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
        4 => u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        8 => u64::from_le_bytes(to_array(bytes)),
        _ => return Err(Error::invalid("compact integer (1, 2, 4 or 8 bytes)", offset)),
    })
}

fn to_array(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(bytes);
    out
}
