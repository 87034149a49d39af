//! The decoder's rules: which columns are visible, where each value comes from (value, handle,
//! origin default, zero value), mismatched keys, and the JSON-lines rendering.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::datum::Datum;
use crate::key::{Handle, RecordKey};
use crate::render::{self, Kind};
use crate::row::write;
use crate::schema::{Job, TableInfo, action, job_state};
use crate::time::Time;
use crate::value::Value;
use crate::{Error, RowDecoder};

fn decoder_of(json: &str) -> RowDecoder {
    RowDecoder::new(TableInfo::from_json(json.as_bytes()).unwrap()).unwrap()
}

fn names(decoder: &RowDecoder) -> Vec<&str> {
    decoder.columns().map(|c| c.name.o.as_str()).collect()
}

#[test]
fn hidden_virtual_and_changing_columns_are_not_visible() {
    let decoder = decoder_of(
        r#"{"id": 5, "name": "t", "cols": [
        {"id": 1, "name": "a", "state": 5, "type": {"Tp": 3}},
        {"id": 2, "name": "v", "state": 5, "type": {"Tp": 3}, "generated_expr_string": "a+1"},
        {"id": 3, "name": "s", "state": 5, "type": {"Tp": 3}, "generated_expr_string": "a+2",
         "generated_stored": true},
        {"id": 4, "name": "_Col$_a_0", "state": 2, "type": {"Tp": 8}}]}"#,
    );
    assert_eq!(names(&decoder), ["a", "s"]);
    let row = decoder
        .decode(
            &RecordKey { table_id: 5, handle: Handle::Int(1) },
            &write::v2(&[(1, Some(vec![1])), (3, Some(vec![3])), (4, Some(vec![1]))]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        row.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        [Value::Int(1), Value::Int(3)]
    );
}

#[test]
fn columns_added_later_take_their_origin_default_or_zero() {
    let decoder = decoder_of(
        r#"{"id": 5, "name": "t", "cols": [
        {"id": 1, "name": "a", "state": 5, "type": {"Tp": 3}},
        {"id": 2, "name": "n", "state": 5, "type": {"Tp": 3, "Flag": 32}, "origin_default": "42"},
        {"id": 3, "name": "d", "state": 5, "type": {"Tp": 246, "Decimal": 2}, "origin_default": "1.5"},
        {"id": 4, "name": "when", "state": 5, "type": {"Tp": 12, "Decimal": 0},
         "origin_default": "2020-01-02 03:04:05"},
        {"id": 5, "name": "e", "state": 5, "type": {"Tp": 247, "Elems": ["x", "y"], "Flag": 1}},
        {"id": 6, "name": "s", "state": 5, "type": {"Tp": 248, "Elems": ["p", "q", "r"]},
         "origin_default": "p,r"},
        {"id": 7, "name": "b", "state": 5, "type": {"Tp": 16, "Flen": 8}, "origin_default_bit": "Bw=="},
        {"id": 8, "name": "txt", "state": 5, "type": {"Tp": 15, "Flag": 1, "Charset": "utf8mb4"}},
        {"id": 9, "name": "nul", "state": 5, "type": {"Tp": 15, "Charset": "utf8mb4"}},
        {"id": 10, "name": "t", "state": 5, "type": {"Tp": 11, "Decimal": 1}, "origin_default": "-01:00:00.5"},
        {"id": 11, "name": "j", "state": 5, "type": {"Tp": 245}, "origin_default": "{\"k\": [1]}"}]}"#,
    );
    let key = RecordKey { table_id: 5, handle: Handle::Int(1) };
    let row = decoder.decode(&key, &write::v2(&[(1, Some(vec![9]))])).unwrap().unwrap();
    let mut line = String::new();
    render::write_row(&mut line, &decoder, &row);
    assert_eq!(
        line,
        r#"{"a":9,"n":42,"d":"1.50","when":"2020-01-02 03:04:05","e":"x","s":"p,r","b":7,"txt":"","nul":null,"t":"-01:00:00.5","j":{"k":[1]}}"#
    );
    // A default that does not fit its type is a schema error, not a guess.
    let bad = decoder_of(
        r#"{"id": 5, "name": "t", "cols": [
        {"id": 1, "name": "a", "state": 5, "type": {"Tp": 3}, "origin_default": "many"}]}"#,
    );
    assert!(matches!(bad.decode(&key, &write::v2(&[])), Err(Error::Schema(_))));
}

const CLUSTERED: &str = r#"{"id": 9, "name": "c", "is_common_handle": true, "cols": [
    {"id": 1, "name": "name", "state": 5,
     "type": {"Tp": 15, "Flag": 3, "Charset": "utf8mb4", "Collate": "utf8mb4_general_ci"}},
    {"id": 2, "name": "day", "state": 5, "type": {"Tp": 10, "Flag": 3}},
    {"id": 3, "name": "v", "state": 5, "type": {"Tp": 3}}],
  "index_info": [{"id": 1, "idx_name": "PRIMARY", "is_primary": true, "is_unique": true, "state": 5,
    "idx_cols": [{"name": "name", "offset": 0, "length": -1}, {"name": "day", "offset": 1, "length": -1}]}]}"#;

#[test]
fn a_common_handle_gives_what_the_value_lacks_and_the_value_wins() {
    let decoder = decoder_of(CLUSTERED);
    let day = Time::parse("2024-02-29", 0).unwrap();
    // The key holds a collation sort key for `name` ("ALICE"), the value the text itself.
    let mut handle = Vec::new();
    crate::datum::write::key(&mut handle, &Datum::Bytes(b"ALICE".to_vec()));
    crate::datum::write::key(&mut handle, &Datum::Uint(day.to_packed()));
    let key = RecordKey { table_id: 9, handle: Handle::Common(handle) };
    let value = write::v2(&[(1, Some(b"alice".to_vec())), (3, Some(vec![5]))]);
    let row = decoder.decode(&key, &value).unwrap().unwrap();
    assert_eq!(row.get(0), Some(&Value::Text("alice".into())));
    assert_eq!(row.get(1), Some(&Value::Date(day)));
    assert_eq!(row.get(2), Some(&Value::Int(5)));
    // Key-only: both key columns, from the key.
    let row = decoder.decode_key(&key).unwrap();
    assert_eq!(row.get(0), Some(&Value::Text("ALICE".into())));
    assert_eq!(row.get(2), None);
    // An int handle for a clustered table, a truncated common handle.
    assert!(decoder.decode(&RecordKey { table_id: 9, handle: Handle::Int(1) }, &value).is_err());
    let short =
        RecordKey { table_id: 9, handle: Handle::Common(vec![0x03, 0x80, 0, 0, 0, 0, 0, 0, 1]) };
    assert!(decoder.decode_key(&short).is_err());
}

#[test]
fn unusable_schemas_are_refused() {
    for json in [
        r#"{"id": 1, "pk_is_handle": true, "cols": [{"id": 1, "name": "a", "state": 5, "type": {"Tp": 3}}]}"#,
        r#"{"id": 1, "is_common_handle": true, "cols": [{"id": 1, "name": "a", "state": 5, "type": {"Tp": 3}}]}"#,
        r#"{"id": 1, "is_common_handle": true, "cols": [],
           "index_info": [{"is_primary": true, "idx_cols": [{"name": "gone"}]}]}"#,
    ] {
        let table = TableInfo::from_json(json.as_bytes()).unwrap();
        assert!(matches!(RowDecoder::new(table), Err(Error::Schema(_))), "{json}");
    }
    assert!(matches!(TableInfo::from_json(b"{\"cols\": 3}"), Err(Error::Schema(_))));
}

#[test]
fn rendering_keeps_precision_and_bytes() {
    let decoder = decoder_of(
        r#"{"id": 5, "name": "t", "pk_is_handle": true, "cols": [
        {"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 35}},
        {"id": 2, "name": "big", "state": 5, "type": {"Tp": 8}},
        {"id": 3, "name": "raw", "state": 5, "type": {"Tp": 252, "Charset": "binary", "Collate": "binary"}},
        {"id": 4, "name": "f", "state": 5, "type": {"Tp": 5}}]}"#,
    );
    let key = RecordKey { table_id: 5, handle: Handle::Int(-1) };
    let mut big = vec![];
    crate::codec::put_compact_int(&mut big, -(1 << 60));
    let value = write::v2(&[
        (2, Some(big)),
        (3, Some(vec![0, 1, 2, 0xFF])),
        (4, Some(crate::codec::encode_float(0.25).to_vec())),
    ]);
    let after = decoder.decode(&key, &value).unwrap().unwrap();
    let before = decoder.decode_key(&key).unwrap();
    let line =
        render::event_line(Kind::Update, "db.t", None, &decoder, Some(&before), Some(&after));
    assert_eq!(
        line,
        r#"{"kind":"update","table":"db.t","before":{"id":"18446744073709551615"},"after":{"id":"18446744073709551615","big":"-1152921504606846976","raw":"AAEC/w==","f":0.25}}"#
    );
}

#[test]
fn ddl_jobs_parse_with_their_table_info() {
    let job = Job::from_json(
        br#"{"id": 120, "type": 5, "schema_id": 2, "table_id": 106, "schema_name": "shop",
            "table_name": "orders", "state": 4, "query": "ALTER TABLE orders ADD COLUMN note TEXT",
            "start_ts": 452113870453751810, "raw_args": null, "version": 1, "err": null,
            "binlog": {"SchemaVersion": 57, "DBInfo": null, "FinishedTS": 0,
              "TableInfo": {"id": 106, "name": {"O": "orders", "L": "orders"}, "cols": []},
              "MultipleTableInfos": null}}"#,
    )
    .unwrap();
    assert_eq!(
        (job.action, job.state, job.binlog.schema_version),
        (action::ADD_COLUMN, job_state::DONE, 57)
    );
    assert_eq!(job.binlog.table_info.map(|t| t.id), Some(106));
    assert!(job.binlog.multiple_table_infos.is_empty());
}
