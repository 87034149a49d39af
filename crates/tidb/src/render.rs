//! Rows as JSON lines: the change-event objects `kvfeed watch --table db.tbl` and
//! `kvfeed decode` print.
//!
//! Values map to JSON as consumers of a change feed expect: integers as numbers (those beyond
//! 2^53, which JavaScript and jq would round, as strings), DECIMAL as a string, DATE as
//! `YYYY-MM-DD`, DATETIME and TIMESTAMP as `YYYY-MM-DD HH:MM:SS[.ffffff]`, TIME as
//! `[-]HH:MM:SS[.ffffff]`, binary strings as base64, text as strings, JSON as JSON, ENUM as its
//! member's name, SET as its members' names comma-joined, BIT as a number, NULL as null. Row
//! objects keep the table's column order.

use alloc::string::String;

use base64::Engine as _;
use serde_json::Value as JsonValue;

use crate::decode::{Row, RowDecoder};
use crate::time::date_text;
use crate::value::Value;

/// The largest integer every JSON consumer reads exactly (2^53).
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// A column value as JSON.
pub fn value_json(value: &Value) -> JsonValue {
    match value {
        Value::Null => JsonValue::Null,
        Value::Int(i) if i.unsigned_abs() <= MAX_SAFE_INTEGER => JsonValue::from(*i),
        Value::Int(i) => JsonValue::String(alloc::format!("{i}")),
        Value::Uint(u) | Value::Bit(u) if *u <= MAX_SAFE_INTEGER => JsonValue::from(*u),
        Value::Uint(u) | Value::Bit(u) => JsonValue::String(alloc::format!("{u}")),
        Value::Float(f) => float_json(f64::from(*f)),
        Value::Double(d) => float_json(*d),
        Value::Decimal(d) => JsonValue::String(alloc::format!("{d}")),
        Value::Date(t) => JsonValue::String(date_text(t)),
        Value::Datetime(t) | Value::Timestamp(t) => JsonValue::String(alloc::format!("{t}")),
        Value::Duration(d) => JsonValue::String(alloc::format!("{d}")),
        Value::Text(s) => JsonValue::String(s.clone()),
        Value::Bytes(b) => JsonValue::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Enum { name, .. } => JsonValue::String(name.clone()),
        Value::Set { names, .. } => JsonValue::String(names.clone()),
        Value::Json(json) => json.to_serde(),
        Value::Vector(items) => items.iter().map(|f| float_json(f64::from(*f))).collect(),
    }
}

/// A float as a JSON number (infinities and NaN, which MySQL never stores, as strings).
fn float_json(value: f64) -> JsonValue {
    serde_json::Number::from_f64(value)
        .map_or_else(|| JsonValue::String(alloc::format!("{value}")), JsonValue::Number)
}

/// Appends `{"column": value, ..}` for the columns `row` holds, in column order.
pub fn write_row(out: &mut String, decoder: &RowDecoder, row: &Row) {
    out.push('{');
    for (n, (i, value)) in row.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let name = decoder.column(i).map_or("", |c| c.name.o.as_str());
        push_json(out, &JsonValue::String(name.into()));
        out.push(':');
        push_json(out, &value_json(value));
    }
    out.push('}');
}

/// What a change did to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A new row.
    Insert,
    /// A changed row.
    Update,
    /// A removed row.
    Delete,
}

impl Kind {
    /// The name printed in the `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One change event as a JSON line (without the newline):
/// `{"kind":..,"table":..,"commit_ts":N,"before":{..}|null,"after":{..}|null}`; `commit_ts` is
/// left out when `None`.
pub fn event_line(
    kind: Kind,
    table: &str,
    commit_ts: Option<u64>,
    decoder: &RowDecoder,
    before: Option<&Row>,
    after: Option<&Row>,
) -> String {
    let mut out = String::with_capacity(128);
    out.push_str("{\"kind\":\"");
    out.push_str(kind.as_str());
    out.push_str("\",\"table\":");
    push_json(&mut out, &JsonValue::String(table.into()));
    if let Some(ts) = commit_ts {
        out.push_str(",\"commit_ts\":");
        out.push_str(&alloc::format!("{ts}"));
    }
    for (name, row) in [("before", before), ("after", after)] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        match row {
            Some(row) => write_row(&mut out, decoder, row),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

fn push_json(out: &mut String, value: &JsonValue) {
    // Serializing a `serde_json::Value` to a string cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// A schema change as a JSON line (without the newline):
/// `{"kind":"ddl","table":..,"commit_ts":N,"query":..}`.
pub fn ddl_line(table: &str, commit_ts: u64, query: &str) -> String {
    let mut out = String::with_capacity(64 + query.len());
    out.push_str("{\"kind\":\"ddl\",\"table\":");
    push_json(&mut out, &JsonValue::String(table.into()));
    out.push_str(&alloc::format!(",\"commit_ts\":{commit_ts},\"query\":"));
    push_json(&mut out, &JsonValue::String(query.into()));
    out.push('}');
    out
}
