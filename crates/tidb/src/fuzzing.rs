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

/// Bytes taken in order from a fuzz input (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte()).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken.to_vec()
    }
}

/// Drives a [`Sequencer`](crate::Sequencer) of the every-type table with changes from `data`:
/// hostile job rows (bytes, or jobs of any action over known and unknown ids), hostile row
/// values of the watched tables, and resolved ts of every source, in any order. Errors are
/// fine (and end the run); panics and broken order are not: events must come in commit-ts
/// order, resolved ts strictly increasing, nothing at or below a resolved ts after it.
#[cfg(any(test, feature = "encode"))]
pub fn sequence(data: &[u8]) {
    use crate::schema::{CiStr, DbInfo, HistoryInfo, Job, action, job_state};
    use crate::{Catalog, Output, RawChange, Sequencer, Source, TableEvent, TableName};

    let db = DbInfo { id: 2, db_name: CiStr::new("d"), state: 5, ..DbInfo::default() };
    let catalog = Catalog::from_snapshot(1, alloc::vec![db], alloc::vec![(2, every_type_table())])
        .unwrap_or_else(|e| panic!("schema: {e}"));
    let watched = [TableName::new("d", "every_type")];
    let mut sequencer =
        Sequencer::new(catalog, None, &watched, 10).unwrap_or_else(|e| panic!("sequencer: {e}"));
    let mut input = Input(data);
    let (mut ts, mut version, mut job_id) = (10u64, 1i64, 0i64);
    let (mut last_event, mut last_resolved) = (0u64, 10u64);
    let mut ids: Vec<i64> = alloc::vec![100];
    while !input.0.is_empty() {
        ts += u64::from(input.byte() % 4);
        let op = input.byte() % 5;
        let change = |key: Vec<u8>, value: Vec<u8>, old_value: Option<Vec<u8>>| RawChange {
            delete: false,
            key,
            value,
            old_value,
            start_ts: ts.saturating_sub(1),
            commit_ts: ts,
        };
        let id = ids[usize::from(input.byte()) % ids.len()];
        match op {
            0 | 1 => {
                job_id += 1;
                let meta = if op == 0 {
                    input.bytes()
                } else {
                    let mut table = every_type_table();
                    table.id = match input.byte() % 3 {
                        0 => id,
                        1 => 200 + i64::from(input.byte()),
                        _ => -i64::from(input.byte()),
                    };
                    if input.byte().is_multiple_of(4) {
                        table.name = CiStr::new("other");
                    }
                    if input.byte().is_multiple_of(3) {
                        table.cols.truncate(usize::from(input.byte()) % 20);
                    }
                    ids.push(table.id);
                    version += i64::from(input.byte() % 3);
                    let kinds = [
                        action::CREATE_TABLE,
                        action::DROP_TABLE,
                        action::TRUNCATE_TABLE,
                        action::RENAME_TABLE,
                        action::ADD_COLUMN,
                        action::DROP_SCHEMA,
                        action::CREATE_TABLES,
                        u32::from(input.byte()),
                    ];
                    let job = Job {
                        id: job_id,
                        action: kinds[usize::from(input.byte()) % kinds.len()],
                        schema_id: 2,
                        table_id: id,
                        state: if input.byte().is_multiple_of(5) {
                            job_state::RUNNING
                        } else {
                            job_state::DONE
                        },
                        binlog: HistoryInfo {
                            schema_version: version,
                            table_info: Some(table.clone()),
                            multiple_table_infos: alloc::vec![table],
                            ..HistoryInfo::default()
                        },
                        ..Job::default()
                    };
                    serde_json::to_vec(&job).unwrap_or_default()
                };
                let value = crate::row::write::v2(&[(5, Some(meta))]);
                let key = RecordKey {
                    table_id: crate::key::DDL_JOB_TABLE_ID,
                    handle: crate::Handle::Int(job_id),
                };
                sequencer.push(Source::Jobs, change(key.encode(), value, None));
            }
            2 => {
                let key = RecordKey { table_id: id, handle: common_key().handle };
                // Half the values are rows of the table (column 2, UNSIGNED), half anything.
                let value = |input: &mut Input<'_>| {
                    if input.byte().is_multiple_of(2) {
                        return input.bytes();
                    }
                    let mut cell = Vec::new();
                    crate::codec::put_compact_uint(&mut cell, u64::from(input.byte()));
                    crate::row::write::v2(&[(2, Some(cell))])
                };
                let old = (input.byte().is_multiple_of(2)).then(|| value(&mut input));
                let new = value(&mut input);
                sequencer.push(Source::Table(id), change(key.encode(), new, old));
            }
            3 => sequencer.resolved(Source::Jobs, ts),
            _ => sequencer.resolved(Source::Table(id), ts),
        }
        let mut out = Vec::new();
        let result = sequencer.advance(&mut out);
        for output in out {
            let Output::Event(event) = output else { continue };
            let at = event.commit_ts();
            assert!(
                at > last_resolved || matches!(event, TableEvent::Resolved(_)),
                "{at} after resolved {last_resolved}"
            );
            if let TableEvent::Resolved(resolved) = event {
                assert!(resolved > last_resolved, "resolved ts {resolved} after {last_resolved}");
                last_resolved = resolved;
            } else {
                assert!(at >= last_event, "event at {at} after one at {last_event}");
                last_event = at;
                let _ = event.to_json_line();
            }
        }
        if result.is_err() {
            return;
        }
    }
}
