//! Typed column values, read from a v2 value's bytes or a datum by the column's type, and the
//! values columns have when a row does not hold them (origin defaults, zero values).
//!
//! The column type decides the meaning: the same compact integer is an INT, a packed DATETIME,
//! an ENUM index or a BIT value depending on `FieldType.Tp`. Strings are text unless their
//! collation or charset is `binary`; text must be valid UTF-8 (latin1 columns are mapped byte
//! to code point); TIMESTAMPs are in UTC.

use alloc::string::String;
use alloc::vec::Vec;

use crate::Error;
use crate::codec::{Reader, compact_int, compact_uint, decode_float};
use crate::datum::Datum;
use crate::decimal::Decimal;
use crate::json::Json;
use crate::row::Cell;
use crate::schema::{ColumnInfo, FieldType, tp};
use crate::time::{Duration, Time};

/// One column's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// A signed integer type or YEAR.
    Int(i64),
    /// An UNSIGNED integer type.
    Uint(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL, at the column's scale.
    Decimal(Decimal),
    /// DATE.
    Date(Time),
    /// DATETIME.
    Datetime(Time),
    /// TIMESTAMP, in UTC.
    Timestamp(Time),
    /// TIME.
    Duration(Duration),
    /// A text string type.
    Text(String),
    /// A binary string type.
    Bytes(Vec<u8>),
    /// ENUM: the 1-based index of the member (0 is MySQL's empty error value) and its name.
    Enum {
        /// 1-based member index; 0 for the empty value.
        index: u64,
        /// The member's name ("" for index 0).
        name: String,
    },
    /// SET: the member bits and the members' names joined by commas.
    Set {
        /// Bit i set means member i is in the set.
        bits: u64,
        /// The members, comma-joined, in declaration order.
        names: String,
    },
    /// BIT(n), as an unsigned number.
    Bit(u64),
    /// JSON.
    Json(Json),
    /// VECTOR.
    Vector(Vec<f32>),
}

fn type_error(column: &ColumnInfo, offset: usize) -> Error {
    Error::column(column.id, Error::invalid("value for the column's type", offset))
}

/// Reads a column's value from a row value's cell; `Ok(None)` when the cell is absent.
pub fn from_cell(column: &ColumnInfo, cell: Cell<'_>) -> Result<Option<Value>, Error> {
    match cell {
        Cell::Absent => Ok(None),
        Cell::Null => Ok(Some(Value::Null)),
        Cell::V2(bytes, offset) => from_v2(&column.field_type, bytes, offset)
            .map(Some)
            .map_err(|e| Error::column(column.id, e)),
        Cell::V1(datum) => from_datum(column, datum).map(Some),
    }
}

/// Reads a v2 value's bytes (the whole of `bytes`) by the column type.
pub fn from_v2(ft: &FieldType, bytes: &[u8], offset: usize) -> Result<Value, Error> {
    let uint = || compact_uint(bytes, offset);
    Ok(match ft.tp {
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG => {
            if ft.is_unsigned() {
                Value::Uint(uint()?)
            } else {
                Value::Int(compact_int(bytes, offset)?)
            }
        }
        tp::YEAR => Value::Int(compact_int(bytes, offset)?),
        tp::FLOAT | tp::DOUBLE => {
            let Ok(array) = <[u8; 8]>::try_from(bytes) else {
                return Err(Error::invalid("float (8 bytes)", offset));
            };
            float_value(ft, decode_float(array))
        }
        tp::NEW_DECIMAL => {
            let mut reader = Reader::with_base(bytes, offset);
            let decimal = Decimal::read(&mut reader)?;
            reader.finish("decimal")?;
            decimal_value(ft, decimal)
        }
        tp::DATE | tp::NEW_DATE | tp::DATETIME | tp::TIMESTAMP => time_value(ft, uint()?, offset)?,
        tp::DURATION => {
            Value::Duration(Duration { nanos: compact_int(bytes, offset)?, fsp: ft.fsp() })
        }
        tp::ENUM => enum_value(ft, uint()?, offset)?,
        tp::SET => set_value(ft, uint()?, offset)?,
        tp::BIT => Value::Bit(uint()?),
        tp::JSON => Value::Json(Json::decode(bytes, offset)?),
        tp::VECTOR_FLOAT32 => Value::Vector(crate::vector::decode(bytes, offset)?),
        tp::NULL => Value::Null,
        _ if is_string_type(ft.tp) => string_value(ft, bytes, offset)?,
        _ => return Err(Error::invalid("column type (not one TiDB stores)", offset)),
    })
}

/// Whether a type code is one of the string and blob types.
pub fn is_string_type(code: u8) -> bool {
    matches!(
        code,
        tp::VARCHAR
            | tp::VAR_STRING
            | tp::STRING
            | tp::TINY_BLOB
            | tp::MEDIUM_BLOB
            | tp::LONG_BLOB
            | tp::BLOB
    )
}

fn float_value(ft: &FieldType, value: f64) -> Value {
    if ft.tp == tp::FLOAT { Value::Float(value as f32) } else { Value::Double(value) }
}

fn decimal_value(ft: &FieldType, decimal: Decimal) -> Value {
    // TiDB rounds a stored scale above the column's (half up) when it reads the value.
    match usize::try_from(ft.decimal) {
        Ok(scale) if scale < decimal.scale() => Value::Decimal(decimal.rescale(scale)),
        _ => Value::Decimal(decimal),
    }
}

fn time_value(ft: &FieldType, packed: u64, offset: usize) -> Result<Value, Error> {
    let time = Time::from_packed(packed, ft.fsp(), offset)?;
    Ok(match ft.tp {
        tp::DATE | tp::NEW_DATE => Value::Date(Time { fsp: 0, ..time }),
        tp::DATETIME => Value::Datetime(time),
        _ => Value::Timestamp(time),
    })
}

fn enum_value(ft: &FieldType, index: u64, offset: usize) -> Result<Value, Error> {
    if index == 0 {
        return Ok(Value::Enum { index, name: String::new() });
    }
    let name = usize::try_from(index - 1).ok().and_then(|i| ft.elems.get(i));
    let Some(name) = name else {
        return Err(Error::invalid("ENUM index (beyond the members)", offset));
    };
    Ok(Value::Enum { index, name: name.clone() })
}

fn set_value(ft: &FieldType, bits: u64, offset: usize) -> Result<Value, Error> {
    let members = ft.elems.len().min(64);
    if members < 64 && bits >> members != 0 {
        return Err(Error::invalid("SET bits (beyond the members)", offset));
    }
    let mut names = String::new();
    for (i, name) in ft.elems.iter().take(64).enumerate() {
        if bits & (1 << i) != 0 {
            if !names.is_empty() {
                names.push(',');
            }
            names.push_str(name);
        }
    }
    Ok(Value::Set { bits, names })
}

fn string_value(ft: &FieldType, bytes: &[u8], offset: usize) -> Result<Value, Error> {
    if ft.is_binary_string() {
        return Ok(Value::Bytes(bytes.into()));
    }
    if ft.charset == "latin1" {
        return Ok(Value::Text(bytes.iter().map(|&b| char::from(b)).collect()));
    }
    match core::str::from_utf8(bytes) {
        Ok(text) => Ok(Value::Text(text.into())),
        Err(e) => Err(Error::invalid("text (not UTF-8)", offset + e.valid_up_to())),
    }
}

/// Reads a column's value from a datum (a v1 row's value or a common handle's column); any
/// flag the type can come from is accepted, as TiDB does.
pub fn from_datum(column: &ColumnInfo, datum: &Datum) -> Result<Value, Error> {
    let ft = &column.field_type;
    let err = || type_error(column, 0);
    let wrap = |e: Error| Error::column(column.id, e);
    let as_u64 = |datum: &Datum| match datum {
        Datum::Uint(u) => Some(*u),
        Datum::Int(i) => Some(*i as u64),
        _ => None,
    };
    if let Datum::Null = datum {
        return Ok(Value::Null);
    }
    Ok(match ft.tp {
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG | tp::YEAR => {
            let bits = as_u64(datum).ok_or_else(err)?;
            if ft.is_unsigned() && ft.tp != tp::YEAR {
                Value::Uint(bits)
            } else {
                Value::Int(bits as i64)
            }
        }
        tp::FLOAT | tp::DOUBLE => match datum {
            Datum::Float(f) => float_value(ft, *f),
            _ => return Err(err()),
        },
        tp::NEW_DECIMAL => match datum {
            Datum::Decimal(d) => decimal_value(ft, d.clone()),
            _ => return Err(err()),
        },
        tp::DATE | tp::NEW_DATE | tp::DATETIME | tp::TIMESTAMP => {
            time_value(ft, as_u64(datum).ok_or_else(err)?, 0).map_err(wrap)?
        }
        tp::DURATION => match datum {
            Datum::Int(nanos) | Datum::Duration(nanos) => {
                Value::Duration(Duration { nanos: *nanos, fsp: ft.fsp() })
            }
            _ => return Err(err()),
        },
        tp::ENUM => enum_value(ft, as_u64(datum).ok_or_else(err)?, 0).map_err(wrap)?,
        tp::SET => set_value(ft, as_u64(datum).ok_or_else(err)?, 0).map_err(wrap)?,
        tp::BIT => Value::Bit(as_u64(datum).ok_or_else(err)?),
        tp::JSON => match datum {
            Datum::Json(json) => Value::Json(json.clone()),
            _ => return Err(err()),
        },
        tp::VECTOR_FLOAT32 => match datum {
            Datum::Vector(items) => Value::Vector(items.clone()),
            _ => return Err(err()),
        },
        tp::NULL => Value::Null,
        code if is_string_type(code) => match datum {
            Datum::Bytes(bytes) => string_value(ft, bytes, 0).map_err(wrap)?,
            _ => return Err(err()),
        },
        _ => return Err(err()),
    })
}

/// The value of a column a row does not hold (it was added after the row was written): the
/// column's origin default when set, else NULL when nullable, else the type's zero value.
pub fn missing_value(column: &ColumnInfo) -> Result<Value, Error> {
    let ft = &column.field_type;
    if let Some(bits) = column.origin_default_bit.as_deref().filter(|_| ft.tp == tp::BIT) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(bits).map_err(|_| {
            Error::Schema(alloc::format!("column {}: bad origin_default_bit", column.id))
        })?;
        let value = bytes.iter().take(8).fold(0u64, |v, &b| (v << 8) | u64::from(b));
        return Ok(Value::Bit(value));
    }
    match &column.origin_default {
        serde_json::Value::Null => {}
        default => return parse_default(column, default),
    }
    if !ft.is_not_null() {
        return Ok(Value::Null);
    }
    Ok(zero_value(ft))
}

/// A type's zero value (what MySQL gives a NOT NULL column without a default).
pub fn zero_value(ft: &FieldType) -> Value {
    match ft.tp {
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG if ft.is_unsigned() => {
            Value::Uint(0)
        }
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG | tp::YEAR => Value::Int(0),
        tp::FLOAT => Value::Float(0.0),
        tp::DOUBLE => Value::Double(0.0),
        tp::NEW_DECIMAL => {
            let scale = usize::try_from(ft.decimal).unwrap_or(0);
            Value::Decimal(Decimal::zero().rescale(scale))
        }
        tp::DATE | tp::NEW_DATE => Value::Date(Time::ZERO),
        tp::DATETIME => Value::Datetime(Time { fsp: ft.fsp(), ..Time::ZERO }),
        tp::TIMESTAMP => Value::Timestamp(Time { fsp: ft.fsp(), ..Time::ZERO }),
        tp::DURATION => Value::Duration(Duration { nanos: 0, fsp: ft.fsp() }),
        tp::ENUM => match ft.elems.first() {
            Some(name) => Value::Enum { index: 1, name: name.clone() },
            None => Value::Enum { index: 0, name: String::new() },
        },
        tp::SET => Value::Set { bits: 0, names: String::new() },
        tp::BIT => Value::Bit(0),
        tp::JSON => Value::Json(Json::Null),
        tp::VECTOR_FLOAT32 => Value::Vector(Vec::new()),
        code if is_string_type(code) && ft.is_binary_string() => Value::Bytes(Vec::new()),
        code if is_string_type(code) => Value::Text(String::new()),
        _ => Value::Null,
    }
}

/// Converts a schema default (a JSON string of the literal, or a number) by the column type.
fn parse_default(column: &ColumnInfo, default: &serde_json::Value) -> Result<Value, Error> {
    let ft = &column.field_type;
    let text: String = match default {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => alloc::format!("{n}"),
        serde_json::Value::Bool(b) => String::from(if *b { "1" } else { "0" }),
        other => alloc::format!("{other}"),
    };
    let bad = || {
        Error::Schema(alloc::format!(
            "column {}: default {text:?} does not fit its type",
            column.id
        ))
    };
    Ok(match ft.tp {
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG if ft.is_unsigned() => {
            Value::Uint(text.trim().parse().map_err(|_| bad())?)
        }
        tp::TINY | tp::SHORT | tp::INT24 | tp::LONG | tp::LONGLONG | tp::YEAR => {
            Value::Int(text.trim().parse().map_err(|_| bad())?)
        }
        tp::FLOAT | tp::DOUBLE => float_value(ft, text.trim().parse().map_err(|_| bad())?),
        tp::NEW_DECIMAL => {
            let decimal = Decimal::parse(text.trim()).ok_or_else(bad)?;
            let scale = usize::try_from(ft.decimal).unwrap_or(decimal.scale());
            Value::Decimal(decimal.rescale(scale))
        }
        tp::DATE | tp::NEW_DATE => {
            Value::Date(Time { fsp: 0, ..Time::parse(&text, 0).ok_or_else(bad)? })
        }
        tp::DATETIME => Value::Datetime(Time::parse(&text, ft.fsp()).ok_or_else(bad)?),
        tp::TIMESTAMP => Value::Timestamp(Time::parse(&text, ft.fsp()).ok_or_else(bad)?),
        tp::DURATION => Value::Duration(Duration::parse(&text, ft.fsp()).ok_or_else(bad)?),
        tp::ENUM => match ft.elems.iter().position(|e| e.eq_ignore_ascii_case(&text)) {
            Some(i) => Value::Enum { index: i as u64 + 1, name: ft.elems[i].clone() },
            None if text.is_empty() => Value::Enum { index: 0, name: String::new() },
            None => return Err(bad()),
        },
        tp::SET => {
            let mut bits = 0u64;
            for member in text.split(',').filter(|m| !m.is_empty()) {
                let i =
                    ft.elems.iter().position(|e| e.eq_ignore_ascii_case(member)).ok_or_else(bad)?;
                bits |= 1u64.checked_shl(i as u32).ok_or_else(bad)?;
            }
            set_value(ft, bits, 0)?
        }
        tp::BIT => Value::Bit(text.trim().parse().map_err(|_| bad())?),
        tp::JSON => Value::Json(json_from_serde(&serde_json::from_str(&text).map_err(|_| bad())?)),
        code if is_string_type(code) && ft.is_binary_string() => Value::Bytes(text.into_bytes()),
        code if is_string_type(code) => Value::Text(text),
        _ => Value::Null,
    })
}

/// A `serde_json` document as TiDB's [`Json`] (integers kept as integers).
pub fn json_from_serde(value: &serde_json::Value) -> Json {
    match value {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Json::Int(i),
            (None, Some(u)) => Json::Uint(u),
            _ => Json::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Json::String(s.clone()),
        serde_json::Value::Array(items) => Json::Array(items.iter().map(json_from_serde).collect()),
        serde_json::Value::Object(fields) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), json_from_serde(v))).collect())
        }
    }
}

/// Writing values as TiDB stores them, for tests and the simulator.
#[cfg(any(test, feature = "encode"))]
pub mod write {
    use alloc::vec::Vec;

    use super::Value;
    use crate::codec::{encode_float, put_compact_int, put_compact_uint};
    use crate::datum::Datum;
    use crate::decimal::Decimal;
    use crate::schema::FieldType;

    /// A DECIMAL at its column's scale, as TiDB sets it on insert.
    fn at_column_scale(ft: &FieldType, decimal: &Decimal) -> Decimal {
        match usize::try_from(ft.decimal) {
            Ok(scale) => decimal.rescale(scale),
            Err(_) => decimal.clone(),
        }
    }

    fn text_bytes(ft: &FieldType, text: &str) -> Vec<u8> {
        if ft.charset == "latin1" {
            text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
        } else {
            text.as_bytes().into()
        }
    }

    /// The bytes of `value` in a v2 row of a column of type `ft`; `None` for NULL.
    pub fn v2(ft: &FieldType, value: &Value) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match value {
            Value::Null => return None,
            Value::Int(i) => put_compact_int(&mut out, *i),
            Value::Duration(d) => put_compact_int(&mut out, d.nanos),
            Value::Uint(u) | Value::Bit(u) | Value::Set { bits: u, .. } => {
                put_compact_uint(&mut out, *u)
            }
            Value::Enum { index, .. } => put_compact_uint(&mut out, *index),
            Value::Float(f) => out.extend_from_slice(&encode_float(f64::from(*f))),
            Value::Double(d) => out.extend_from_slice(&encode_float(*d)),
            Value::Decimal(d) => {
                let d = at_column_scale(ft, d);
                let (precision, scale) = d.natural_precision();
                out.extend_from_slice(&[precision, scale]);
                out.extend(d.to_bin(precision, scale).unwrap_or_default());
            }
            Value::Date(t) | Value::Datetime(t) | Value::Timestamp(t) => {
                put_compact_uint(&mut out, t.to_packed())
            }
            Value::Text(s) => out.extend(text_bytes(ft, s)),
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Json(json) => out.extend(crate::json::encode(json)),
            Value::Vector(items) => out.extend(crate::vector::encode(items)),
        }
        Some(out)
    }

    /// `value` as the datum a v1 row (or a key) holds for a column of type `ft`: times packed,
    /// durations as nanoseconds, ENUM, SET and BIT as their numbers.
    pub fn datum(ft: &FieldType, value: &Value) -> Datum {
        match value {
            Value::Null => Datum::Null,
            Value::Int(i) => Datum::Int(*i),
            Value::Duration(d) => Datum::Int(d.nanos),
            Value::Uint(u) | Value::Bit(u) | Value::Set { bits: u, .. } => Datum::Uint(*u),
            Value::Enum { index, .. } => Datum::Uint(*index),
            Value::Float(f) => Datum::Float(f64::from(*f)),
            Value::Double(d) => Datum::Float(*d),
            Value::Decimal(d) => Datum::Decimal(at_column_scale(ft, d)),
            Value::Date(t) | Value::Datetime(t) | Value::Timestamp(t) => Datum::Uint(t.to_packed()),
            Value::Text(s) => Datum::Bytes(text_bytes(ft, s)),
            Value::Bytes(b) => Datum::Bytes(b.clone()),
            Value::Json(json) => Datum::Json(json.clone()),
            Value::Vector(items) => Datum::Vector(items.clone()),
        }
    }
}
