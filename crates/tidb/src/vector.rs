//! TiDB's VECTOR(FLOAT32) values: a little-endian u32 dimension count, then that many
//! little-endian IEEE f32 values.

use alloc::vec::Vec;

use crate::Error;
use crate::codec::Reader;

/// The most dimensions TiDB allows in a vector.
pub const MAX_DIMENSIONS: usize = 16_383;

/// The length of the vector at the start of `bytes`.
pub fn peek_len(bytes: &[u8], offset: usize) -> Result<usize, Error> {
    let mut reader = Reader::with_base(bytes, offset);
    let dims = reader.u32_le("vector dimensions")? as usize;
    if dims > MAX_DIMENSIONS {
        return Err(Error::invalid("vector dimensions", offset));
    }
    let len = 4 + dims * 4;
    if len > bytes.len() {
        return Err(Error::truncated("vector", offset));
    }
    Ok(len)
}

/// Decodes a whole vector value; `offset` places errors.
pub fn decode(bytes: &[u8], offset: usize) -> Result<Vec<f32>, Error> {
    let len = peek_len(bytes, offset)?;
    if len != bytes.len() {
        return Err(Error::TrailingBytes { what: "vector", offset: offset + len });
    }
    Ok(bytes[4..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Writes a vector value.
#[cfg(any(test, feature = "encode"))]
pub fn encode(items: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + items.len() * 4);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        out.extend_from_slice(&item.to_le_bytes());
    }
    out
}
