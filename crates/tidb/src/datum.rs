//! Flag-prefixed datums: the values of a v1 row and the columns of a common handle or an index
//! key (TiDB's `codec.EncodeValue` and `codec.EncodeKey`).
//!
//! Each datum is one flag byte and a body. The same flags serve both forms; keys use the
//! comparable bodies (memcomparable bytes, comparable integers) and values the compact ones
//! (varints, length-prefixed bytes). A decoder accepts every flag anywhere, as TiDB's does: the
//! column's type, not the flag, says what the datum means ([`crate::value`]).

use alloc::vec::Vec;

use crate::codec::Reader;
use crate::decimal::Decimal;
use crate::json::Json;
use crate::{Error, vector};

/// Datum flags.
pub mod flag {
    /// NULL.
    pub const NIL: u8 = 0x00;
    /// Memcomparable bytes (keys).
    pub const BYTES: u8 = 0x01;
    /// Varint length and bytes (values).
    pub const COMPACT_BYTES: u8 = 0x02;
    /// Comparable i64.
    pub const INT: u8 = 0x03;
    /// Big-endian u64.
    pub const UINT: u8 = 0x04;
    /// Comparable f64.
    pub const FLOAT: u8 = 0x05;
    /// Precision, scale and binary decimal.
    pub const DECIMAL: u8 = 0x06;
    /// Comparable i64 nanoseconds.
    pub const DURATION: u8 = 0x07;
    /// Zig-zag varint.
    pub const VARINT: u8 = 0x08;
    /// Uvarint.
    pub const UVARINT: u8 = 0x09;
    /// Binary JSON.
    pub const JSON: u8 = 0x0a;
    /// A FLOAT32 vector.
    pub const VECTOR_FLOAT32: u8 = 0x14;
}

/// One decoded datum, before the column type gives it meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    /// NULL.
    Null,
    /// Bytes (from either bytes flag).
    Bytes(Vec<u8>),
    /// A signed integer (from the int or varint flag).
    Int(i64),
    /// An unsigned integer (from the uint or uvarint flag).
    Uint(u64),
    /// A float.
    Float(f64),
    /// A decimal.
    Decimal(Decimal),
    /// A duration in nanoseconds (the comparable duration flag of keys).
    Duration(i64),
    /// Binary JSON.
    Json(Json),
    /// A FLOAT32 vector.
    Vector(Vec<f32>),
}

impl Datum {
    /// Reads one datum.
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, Error> {
        let at = reader.offset();
        let tag = reader.u8("datum flag")?;
        Ok(match tag {
            flag::NIL => Self::Null,
            flag::BYTES => Self::Bytes(reader.memcomparable_bytes("bytes datum")?),
            flag::COMPACT_BYTES => Self::Bytes(reader.compact_bytes("bytes datum")?.into()),
            flag::INT => Self::Int(reader.comparable_int("int datum")?),
            flag::UINT => Self::Uint(reader.u64_be("uint datum")?),
            flag::FLOAT => Self::Float(reader.comparable_float("float datum")?),
            flag::DECIMAL => Self::Decimal(Decimal::read(reader)?),
            flag::DURATION => Self::Duration(reader.comparable_int("duration datum")?),
            flag::VARINT => Self::Int(reader.varint("varint datum")?),
            flag::UVARINT => Self::Uint(reader.uvarint("uvarint datum")?),
            flag::JSON => {
                let start = reader.offset();
                let len = Json::peek_len(reader.rest(), start)?;
                Self::Json(Json::decode(reader.take(len, "JSON datum")?, start)?)
            }
            flag::VECTOR_FLOAT32 => {
                let start = reader.offset();
                let len = vector::peek_len(reader.rest(), start)?;
                Self::Vector(vector::decode(reader.take(len, "vector datum")?, start)?)
            }
            other => return Err(Error::UnknownFlag { flag: other, offset: at }),
        })
    }

    /// Reads datums until the input ends.
    pub fn read_all(bytes: &[u8], offset: usize) -> Result<Vec<Self>, Error> {
        let mut reader = Reader::with_base(bytes, offset);
        let mut out = Vec::new();
        while !reader.is_empty() {
            out.push(Self::read(&mut reader)?);
        }
        Ok(out)
    }
}

/// Writing datums, for tests and the simulator.
#[cfg(any(test, feature = "encode"))]
pub mod write {
    use alloc::vec::Vec;

    use super::{Datum, flag};
    use crate::codec::{encode_float, encode_int, put_uvarint, put_varint};

    /// Appends `datum` in its key (comparable) form.
    pub fn key(out: &mut Vec<u8>, datum: &Datum) {
        match datum {
            Datum::Bytes(bytes) => {
                out.push(flag::BYTES);
                kvfeed_span::key::encode_into(bytes, out);
            }
            Datum::Int(i) => {
                out.push(flag::INT);
                out.extend_from_slice(&encode_int(*i));
            }
            Datum::Duration(nanos) => {
                out.push(flag::DURATION);
                out.extend_from_slice(&encode_int(*nanos));
            }
            other => common(out, other),
        }
    }

    /// Appends `datum` in its value (compact) form, as a v1 row holds it.
    pub fn value(out: &mut Vec<u8>, datum: &Datum) {
        match datum {
            Datum::Bytes(bytes) => {
                out.push(flag::COMPACT_BYTES);
                put_varint(out, bytes.len() as i64);
                out.extend_from_slice(bytes);
            }
            Datum::Int(i) | Datum::Duration(i) => {
                out.push(flag::VARINT);
                put_varint(out, *i);
            }
            Datum::Uint(u) => {
                out.push(flag::UVARINT);
                put_uvarint(out, *u);
            }
            other => common(out, other),
        }
    }

    fn common(out: &mut Vec<u8>, datum: &Datum) {
        match datum {
            Datum::Null => out.push(flag::NIL),
            Datum::Uint(u) => {
                out.push(flag::UINT);
                out.extend_from_slice(&u.to_be_bytes());
            }
            Datum::Float(f) => {
                out.push(flag::FLOAT);
                out.extend_from_slice(&encode_float(*f));
            }
            Datum::Decimal(d) => {
                out.push(flag::DECIMAL);
                let (precision, scale) = d.natural_precision();
                out.extend_from_slice(&[precision, scale]);
                out.extend(d.to_bin(precision, scale).unwrap_or_default());
            }
            Datum::Json(json) => {
                out.push(flag::JSON);
                out.extend(crate::json::encode(json));
            }
            Datum::Vector(items) => {
                out.push(flag::VECTOR_FLOAT32);
                out.extend(crate::vector::encode(items));
            }
            Datum::Bytes(_) | Datum::Int(_) | Datum::Duration(_) => unreachable!("handled above"),
        }
    }
}
