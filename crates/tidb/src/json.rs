//! TiDB's binary JSON: one type byte, then a little-endian body.
//!
//! Objects and arrays start with an element count and their total size; then come entries (an
//! object's key entries first: offset and length of each key; then value entries: a type byte and
//! either an inlined literal or the value's offset, counted from the start of the container's
//! body). Scalars are int64, uint64, double, strings (uvarint length), opaque values (a MySQL type
//! code and bytes), dates and times (TiDB's in-memory time layout) and durations.
//!
//! Decoding checks every offset against the container it lies in, limits nesting to
//! [`MAX_DEPTH`] and decodes at most one value per input byte (entries of a hostile document may
//! all point at one nested container, which would otherwise cost exponential time), so hostile
//! bytes give an [`Error`] and work linear in their length.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Error;
use crate::codec::Reader;
use crate::time::{Duration, Time};

/// Nesting TiDB allows in a JSON document; deeper input is refused.
pub const MAX_DEPTH: usize = 100;

const OBJECT: u8 = 0x01;
const ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT64: u8 = 0x09;
const UINT64: u8 = 0x0a;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;
const OPAQUE: u8 = 0x0d;
const DATE: u8 = 0x0e;
const DATETIME: u8 = 0x0f;
const TIMESTAMP: u8 = 0x10;
const TIME: u8 = 0x11;

const LITERAL_NULL: u8 = 0x00;
const LITERAL_TRUE: u8 = 0x01;
const LITERAL_FALSE: u8 = 0x02;

const HEADER: usize = 8;
const KEY_ENTRY: usize = 6;
const VALUE_ENTRY: usize = 5;

/// A JSON document as TiDB holds it (numbers keep their integer or float kind; MySQL's dates,
/// times and opaque values are their own kinds).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A double.
    Double(f64),
    /// A string.
    String(String),
    /// A MySQL value JSON has no kind for: its type code and bytes.
    Opaque {
        /// The MySQL type code (for example 0xfe for BINARY).
        type_code: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A DATE.
    Date(Time),
    /// A DATETIME.
    Datetime(Time),
    /// A TIMESTAMP.
    Timestamp(Time),
    /// A TIME.
    Time(Duration),
    /// An array.
    Array(Vec<Json>),
    /// An object, keys in TiDB's order (sorted by bytes).
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Decodes a whole binary JSON value (type byte and body); `offset` places errors.
    pub fn decode(bytes: &[u8], offset: usize) -> Result<Self, Error> {
        let mut reader = Reader::with_base(bytes, offset);
        let kind = reader.u8("JSON type")?;
        let body = reader.rest();
        let len = body_len(kind, body, reader.offset())?;
        if len != body.len() {
            return Err(Error::TrailingBytes { what: "JSON", offset: reader.offset() + len });
        }
        let mut budget = bytes.len();
        decode_value(kind, body, reader.offset(), 0, &mut budget)
    }

    /// The length of the binary JSON value at the start of `bytes` (type byte included), for
    /// skipping over it in a v1 row.
    pub fn peek_len(bytes: &[u8], offset: usize) -> Result<usize, Error> {
        let mut reader = Reader::with_base(bytes, offset);
        let kind = reader.u8("JSON type")?;
        Ok(1 + body_len(kind, reader.rest(), reader.offset())?)
    }

    /// The document as `serde_json` sees it: dates and times as their MySQL text, opaque values
    /// as MySQL prints them (`base64:type{code}:{base64}`).
    pub fn to_serde(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Uint(u) => Value::from(*u),
            Self::Double(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
            Self::String(s) => Value::String(s.clone()),
            Self::Opaque { type_code, bytes } => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                Value::String(alloc::format!("base64:type{type_code}:{encoded}"))
            }
            Self::Date(t) => Value::String(crate::time::date_text(t)),
            Self::Datetime(t) | Self::Timestamp(t) => Value::String(alloc::format!("{t}")),
            Self::Time(d) => Value::String(alloc::format!("{d}")),
            Self::Array(items) => Value::Array(items.iter().map(Self::to_serde).collect()),
            Self::Object(fields) => Value::Object(
                fields.iter().map(|(key, value)| (key.clone(), value.to_serde())).collect(),
            ),
        }
    }
}

/// The length of a body of kind `kind` at the start of `body`.
fn body_len(kind: u8, body: &[u8], offset: usize) -> Result<usize, Error> {
    let mut reader = Reader::with_base(body, offset);
    let len = match kind {
        OBJECT | ARRAY => {
            reader.u32_le("JSON element count")?;
            reader.u32_le("JSON container size")? as usize
        }
        LITERAL => 1,
        INT64 | UINT64 | DOUBLE | DATE | DATETIME | TIMESTAMP => 8,
        TIME => 12,
        STRING => {
            let len = reader.uvarint("JSON string length")?;
            prefixed_len(reader.offset() - offset, len, "JSON string length", offset)?
        }
        OPAQUE => {
            reader.u8("JSON opaque type")?;
            let len = reader.uvarint("JSON opaque length")?;
            prefixed_len(reader.offset() - offset, len, "JSON opaque length", offset)?
        }
        _ => return Err(Error::invalid("JSON type", offset.saturating_sub(1))),
    };
    if len > body.len() {
        return Err(Error::truncated("JSON value", offset));
    }
    Ok(len)
}

/// `header + len`, the whole length of a value whose body of `len` bytes follows a header; a
/// length no input can hold is invalid (it must not overflow).
fn prefixed_len(
    header: usize,
    len: u64,
    what: &'static str,
    offset: usize,
) -> Result<usize, Error> {
    to_len(len, what, offset)?.checked_add(header).ok_or(Error::invalid(what, offset))
}

fn to_len(len: u64, what: &'static str, offset: usize) -> Result<usize, Error> {
    usize::try_from(len).map_err(|_| Error::invalid(what, offset))
}

/// Decodes the value of kind `kind` whose body is `body` (exactly, for scalars; at least, for
/// containers, which know their size). `offset` is where `body` lies in the caller's bytes.
/// `budget` is the number of values still allowed to be decoded.
fn decode_value(
    kind: u8,
    body: &[u8],
    offset: usize,
    depth: usize,
    budget: &mut usize,
) -> Result<Json, Error> {
    *budget = budget
        .checked_sub(1)
        .ok_or(Error::invalid("JSON (more values than bytes: entries overlap)", offset))?;
    let mut reader = Reader::with_base(body, offset);
    Ok(match kind {
        OBJECT | ARRAY => {
            if depth >= MAX_DEPTH {
                return Err(Error::invalid("JSON (nested too deep)", offset));
            }
            decode_container(kind == OBJECT, body, offset, depth + 1, budget)?
        }
        LITERAL => literal(reader.u8("JSON literal")?, offset)?,
        INT64 => Json::Int(reader.u64_le("JSON int64")? as i64),
        UINT64 => Json::Uint(reader.u64_le("JSON uint64")?),
        DOUBLE => Json::Double(f64::from_bits(reader.u64_le("JSON double")?)),
        STRING => {
            let len = reader.uvarint("JSON string length")?;
            let bytes = reader.take(to_len(len, "JSON string length", offset)?, "JSON string")?;
            Json::String(utf8(bytes, "JSON string", offset)?)
        }
        OPAQUE => {
            let type_code = reader.u8("JSON opaque type")?;
            let len = reader.uvarint("JSON opaque length")?;
            let bytes = reader.take(to_len(len, "JSON opaque length", offset)?, "JSON opaque")?;
            Json::Opaque { type_code, bytes: bytes.into() }
        }
        DATE | DATETIME | TIMESTAMP => {
            let bits = reader.u64_le("JSON time")?;
            // The layout keeps the fsp in the low nibble of the in-memory form; MySQL shows the
            // microseconds in full inside JSON.
            let time = Time::from_core_time(bits, 6, offset)?;
            match kind {
                DATE => Json::Date(Time { fsp: 0, ..time }),
                DATETIME => Json::Datetime(time),
                _ => Json::Timestamp(time),
            }
        }
        TIME => {
            let nanos = reader.u64_le("JSON time")? as i64;
            let fsp = reader.u32_le("JSON time fsp")?;
            let fsp = u8::try_from(fsp).ok().filter(|&f| f <= crate::time::MAX_FSP);
            let fsp = fsp.ok_or(Error::invalid("JSON time fsp", offset + 8))?;
            Json::Time(Duration { nanos, fsp })
        }
        _ => return Err(Error::invalid("JSON type", offset)),
    })
}

fn literal(byte: u8, offset: usize) -> Result<Json, Error> {
    match byte {
        LITERAL_NULL => Ok(Json::Null),
        LITERAL_TRUE => Ok(Json::Bool(true)),
        LITERAL_FALSE => Ok(Json::Bool(false)),
        _ => Err(Error::invalid("JSON literal", offset)),
    }
}

fn utf8(bytes: &[u8], what: &'static str, offset: usize) -> Result<String, Error> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|e| Error::invalid(what, offset + e.valid_up_to()))
}

fn decode_container(
    object: bool,
    body: &[u8],
    offset: usize,
    depth: usize,
    budget: &mut usize,
) -> Result<Json, Error> {
    let mut reader = Reader::with_base(body, offset);
    let count = reader.u32_le("JSON element count")? as usize;
    let size = reader.u32_le("JSON container size")? as usize;
    let Some(body) = body.get(..size) else {
        return Err(Error::truncated("JSON container", offset));
    };
    let entry = if object { KEY_ENTRY + VALUE_ENTRY } else { VALUE_ENTRY };
    if count.checked_mul(entry).and_then(|n| n.checked_add(HEADER)).is_none_or(|n| n > size) {
        return Err(Error::invalid("JSON element count", offset));
    }
    let mut reader = Reader::with_base(body, offset);
    reader.take(HEADER, "JSON header")?;
    let mut keys = Vec::new();
    if object {
        keys.reserve(count);
        for _ in 0..count {
            let at = reader.offset();
            let key_offset = reader.u32_le("JSON key offset")? as usize;
            let key_len = usize::from(reader.u16_le("JSON key length")?);
            let Some(key) =
                key_offset.checked_add(key_len).and_then(|end| body.get(key_offset..end))
            else {
                return Err(Error::invalid("JSON key offset", at));
            };
            keys.push(utf8(key, "JSON key", offset + key_offset)?);
        }
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let at = reader.offset();
        let kind = reader.u8("JSON value type")?;
        let inline = reader.array::<4>("JSON value offset")?;
        let value = if kind == LITERAL {
            literal(inline[0], at + 1)?
        } else {
            let value_offset = u32::from_le_bytes(inline) as usize;
            if value_offset < HEADER || value_offset >= body.len() {
                return Err(Error::invalid("JSON value offset", at + 1));
            }
            let rest = &body[value_offset..];
            let len = body_len(kind, rest, offset + value_offset)?;
            decode_value(kind, &rest[..len], offset + value_offset, depth, budget)?
        };
        values.push(value);
    }
    Ok(if object {
        Json::Object(keys.into_iter().zip(values).collect())
    } else {
        Json::Array(values)
    })
}

/// Writes `json` in TiDB's binary form (type byte and body), keys of objects sorted by bytes as
/// TiDB writes them.
#[cfg(any(test, feature = "encode"))]
pub fn encode(json: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(kind_of(json));
    encode_body(json, &mut out);
    out
}

#[cfg(any(test, feature = "encode"))]
fn kind_of(json: &Json) -> u8 {
    match json {
        Json::Null | Json::Bool(_) => LITERAL,
        Json::Int(_) => INT64,
        Json::Uint(_) => UINT64,
        Json::Double(_) => DOUBLE,
        Json::String(_) => STRING,
        Json::Opaque { .. } => OPAQUE,
        Json::Date(_) => DATE,
        Json::Datetime(_) => DATETIME,
        Json::Timestamp(_) => TIMESTAMP,
        Json::Time(_) => TIME,
        Json::Array(_) => ARRAY,
        Json::Object(_) => OBJECT,
    }
}

#[cfg(any(test, feature = "encode"))]
fn literal_byte(json: &Json) -> Option<u8> {
    match json {
        Json::Null => Some(LITERAL_NULL),
        Json::Bool(true) => Some(LITERAL_TRUE),
        Json::Bool(false) => Some(LITERAL_FALSE),
        _ => None,
    }
}

#[cfg(any(test, feature = "encode"))]
fn encode_body(json: &Json, out: &mut Vec<u8>) {
    use crate::codec::put_uvarint;
    match json {
        Json::Null | Json::Bool(_) => out.push(literal_byte(json).unwrap_or(LITERAL_NULL)),
        Json::Int(i) => out.extend_from_slice(&i.to_le_bytes()),
        Json::Uint(u) => out.extend_from_slice(&u.to_le_bytes()),
        Json::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
        Json::String(s) => {
            put_uvarint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Json::Opaque { type_code, bytes } => {
            out.push(*type_code);
            put_uvarint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        Json::Date(t) | Json::Datetime(t) | Json::Timestamp(t) => {
            out.extend_from_slice(&t.to_core_time().to_le_bytes());
        }
        Json::Time(d) => {
            out.extend_from_slice(&d.nanos.to_le_bytes());
            out.extend_from_slice(&u32::from(d.fsp).to_le_bytes());
        }
        Json::Array(items) => {
            let items: Vec<(&str, &Json)> = items.iter().map(|v| ("", v)).collect();
            encode_container(false, &items, out);
        }
        Json::Object(fields) => {
            let mut fields: Vec<(&str, &Json)> =
                fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            encode_container(true, &fields, out);
        }
    }
}

#[cfg(any(test, feature = "encode"))]
fn encode_container(object: bool, items: &[(&str, &Json)], out: &mut Vec<u8>) {
    let start = out.len();
    let entry = if object { KEY_ENTRY + VALUE_ENTRY } else { VALUE_ENTRY };
    let entries_end = HEADER + items.len() * entry;
    let mut tail = Vec::new();
    let mut key_entries = Vec::new();
    if object {
        for (key, _) in items {
            let at = entries_end + tail.len();
            key_entries.extend_from_slice(&(at as u32).to_le_bytes());
            key_entries.extend_from_slice(&(key.len() as u16).to_le_bytes());
            tail.extend_from_slice(key.as_bytes());
        }
    }
    let mut value_entries = Vec::new();
    for (_, value) in items {
        value_entries.push(kind_of(value));
        if let Some(byte) = literal_byte(value) {
            value_entries.extend_from_slice(&[byte, 0, 0, 0]);
        } else {
            let at = entries_end + tail.len();
            value_entries.extend_from_slice(&(at as u32).to_le_bytes());
            encode_body(value, &mut tail);
        }
    }
    let size = entries_end + tail.len();
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&key_entries);
    out.extend_from_slice(&value_entries);
    out.extend_from_slice(&tail);
    debug_assert_eq!(out.len() - start, size);
}
