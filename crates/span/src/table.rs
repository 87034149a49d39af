//! TiDB's table key layout: `t` + order-preserving table id + `_r` + order-preserving handle.
//!
//! Integers are encoded as 8 big-endian bytes of `value ^ (1 << 63)`, so that signed order equals
//! byte order. A table's record span is `[t{id}_r, t{id}_s)` (index keys, `_i`, are left out),
//! encoded memcomparably like every span.

use alloc::vec::Vec;

use crate::key::EncodedKey;
use crate::span::Span;

/// The prefix of every table key.
pub const TABLE_PREFIX: u8 = b't';
/// The separator before a record handle.
pub const RECORD_PREFIX_SEP: &[u8; 2] = b"_r";

const SIGN_MASK: u64 = 1 << 63;

/// The 8-byte order-preserving encoding of a signed integer.
pub fn encode_int(value: i64) -> [u8; 8] {
    ((value as u64) ^ SIGN_MASK).to_be_bytes()
}

/// The inverse of [`encode_int`].
pub fn decode_int(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ SIGN_MASK) as i64
}

/// The raw prefix `t{id}` shared by all keys of a table.
pub fn table_prefix(table_id: i64) -> [u8; 9] {
    let mut out = [0; 9];
    out[0] = TABLE_PREFIX;
    out[1..].copy_from_slice(&encode_int(table_id));
    out
}

/// The raw record prefix `t{id}_r` of a table.
pub fn record_prefix(table_id: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    out.extend_from_slice(&table_prefix(table_id));
    out.extend_from_slice(RECORD_PREFIX_SEP);
    out
}

/// The raw key of the row with integer handle `handle` in table `table_id`.
pub fn record_key(table_id: i64, handle: i64) -> Vec<u8> {
    let mut out = record_prefix(table_id);
    out.extend_from_slice(&encode_int(handle));
    out
}

/// The encoded span of a table's records, `[t{id}_r, t{id}_s)`.
pub fn table_span(table_id: i64) -> Span {
    let start = record_prefix(table_id);
    let mut end = start.clone();
    // `_r` -> `_s`: the smallest key above every record key.
    *end.last_mut().expect("record prefix is not empty") += 1;
    Span::new(EncodedKey::encode(&start), EncodedKey::encode(&end))
        .expect("a table's record start is below its end")
}

/// The table id of a raw key, if it is a table key (`t` followed by 8 id bytes).
pub fn table_id_of(raw: &[u8]) -> Option<i64> {
    let (&prefix, rest) = raw.split_first()?;
    if prefix != TABLE_PREFIX {
        return None;
    }
    let id: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    Some(decode_int(id))
}

/// The handle of a raw record key with an integer handle, as `(table id, handle)`.
pub fn record_handle_of(raw: &[u8]) -> Option<(i64, i64)> {
    let table_id = table_id_of(raw)?;
    let rest = raw.get(9..)?;
    let handle = rest.strip_prefix(RECORD_PREFIX_SEP)?;
    let handle: [u8; 8] = handle.try_into().ok()?;
    Some((table_id, decode_int(handle)))
}
