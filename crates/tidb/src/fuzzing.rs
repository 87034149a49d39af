//! The fuzz entry point of the codec and the checks it runs.
//!
//! Compiled under `cfg(fuzzing)` (cargo-fuzz; `fuzz/fuzz_targets/tidb_decode.rs` is one call into
//! this module) and under `cfg(test)`, where proptest drives the same checks. Not part of the
//! crate's API.
//!
//! [`decode`] hands arbitrary bytes to every decoder of the crate (keys, datums, row values
//! against a schema covering every column type, binary JSON, decimals, vectors): none may
//! panic, and what decodes must stay consistent (a record key re-encodes to its input, a JSON
//! document's peeked length is its length).

use alloc::vec::Vec;

use crate::codec::Reader;
use crate::datum::Datum;
use crate::decimal::Decimal;
use crate::json::Json;
use crate::key::{IndexKey, MetaKey, RecordKey};
use crate::row::RowValue;
use crate::{RowDecoder, TableInfo};

/// A table with one column of every type TiDB stores, ids 1.. in table order, a common handle
/// over two of them, so hostile row values meet every conversion.
pub fn every_type_table() -> TableInfo {
    use crate::schema::{ColumnInfo, FieldType, IndexColumn, IndexInfo, tp};
    let types: &[(u8, u64, i64, &str, &[&str])] = &[
        (tp::LONGLONG, 0, 0, "binary", &[]),
        (tp::LONG, crate::schema::flag::UNSIGNED, 0, "binary", &[]),
        (tp::TINY, 0, 0, "binary", &[]),
        (tp::FLOAT, 0, -1, "binary", &[]),
        (tp::DOUBLE, 0, -1, "binary", &[]),
        (tp::NEW_DECIMAL, 0, 2, "binary", &[]),
        (tp::DATE, 0, 0, "binary", &[]),
        (tp::DATETIME, 0, 6, "binary", &[]),
        (tp::TIMESTAMP, 0, 3, "binary", &[]),
        (tp::DURATION, 0, 2, "binary", &[]),
        (tp::YEAR, 0, 0, "binary", &[]),
        (tp::VARCHAR, 0, 0, "utf8mb4", &[]),
        (tp::BLOB, 0, 0, "binary", &[]),
        (tp::STRING, 0, 0, "latin1", &[]),
        (tp::ENUM, 0, 0, "utf8mb4", &["a", "b", "c"]),
        (tp::SET, 0, 0, "utf8mb4", &["x", "y"]),
        (tp::BIT, crate::schema::flag::UNSIGNED, 0, "binary", &[]),
        (tp::JSON, 0, 0, "binary", &[]),
        (tp::VECTOR_FLOAT32, 0, 0, "binary", &[]),
    ];
    let cols = types
        .iter()
        .enumerate()
        .map(|(i, &(code, flag, decimal, charset, elems))| ColumnInfo {
            id: i as i64 + 1,
            name: crate::schema::CiStr::new(&alloc::format!("c{}", i + 1)),
            offset: i as i64,
            state: crate::schema::state::PUBLIC,
            field_type: FieldType {
                tp: code,
                flag,
                flen: -1,
                decimal,
                charset: charset.into(),
                collate: if charset == "binary" { "binary".into() } else { "utf8mb4_bin".into() },
                elems: elems.iter().map(|&e| e.into()).collect(),
            },
            ..ColumnInfo::default()
        })
        .collect();
    let primary = IndexInfo {
        id: 1,
        idx_name: crate::schema::CiStr::new("PRIMARY"),
        idx_cols: ["c1", "c12"]
            .iter()
            .map(|&name| IndexColumn {
                name: crate::schema::CiStr::new(name),
                offset: 0,
                length: -1,
            })
            .collect(),
        state: crate::schema::state::PUBLIC,
        is_unique: true,
        is_primary: true,
    };
    TableInfo {
        id: 100,
        name: crate::schema::CiStr::new("every_type"),
        cols,
        index_info: alloc::vec![primary],
        is_common_handle: true,
        state: crate::schema::state::PUBLIC,
        ..TableInfo::default()
    }
}

/// Feeds `data` to every decoder; panics on an inconsistency (never on bad input).
pub fn decode(data: &[u8]) {
    if let Ok(key) = RecordKey::decode(data) {
        assert_eq!(key.encode(), crate::key::strip_keyspace(data), "record key re-encodes");
    }
    let _ = IndexKey::decode(data);
    if let Ok(meta) = MetaKey::decode(data) {
        assert_eq!(meta.encode(), crate::key::strip_keyspace(data), "meta key re-encodes");
    }
    let _ = Datum::read_all(data, 0);
    let _ = Decimal::read(&mut Reader::new(data));
    let _ = crate::vector::decode(data, 0);
    if let Ok(json) = Json::decode(data, 0) {
        assert_eq!(Json::peek_len(data, 0), Ok(data.len()), "peeked JSON length");
        let _ = json.to_serde();
    }
    // As a row of the every-type table, under a key that is the first bytes when they make one.
    let decoder = RowDecoder::new(every_type_table()).unwrap_or_else(|e| panic!("schema: {e}"));
    let key = common_key();
    if let Ok(Some(row)) = decoder.decode(&key, data) {
        let mut line = alloc::string::String::new();
        crate::render::write_row(&mut line, &decoder, &row);
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "row renders as JSON");
    }
    let _ = RowValue::parse(data);
    let _ = TableInfo::from_json(data);
    let _ = crate::Job::from_json(data);
}

fn common_key() -> RecordKey {
    let mut handle = Vec::new();
    handle.push(crate::datum::flag::INT);
    handle.extend_from_slice(&crate::codec::encode_int(7));
    handle.push(crate::datum::flag::BYTES);
    kvfeed_span::key::encode_into(b"pk", &mut handle);
    RecordKey { table_id: 100, handle: crate::Handle::Common(handle) }
}
