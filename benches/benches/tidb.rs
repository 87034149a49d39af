//! TiDB row decoding, beside copying the same key and value bytes (what a change feed does with
//! a row it does not decode), measured in the same run:
//!
//! - `tidb/copy_kv`: the baseline, the key and value copied into fresh vectors;
//! - `tidb/decode_v2`, `tidb/decode_v1`: record key parsed and a 10-column row (integers, a
//!   decimal, an enum, text, times, a double, bytes) decoded into typed values against its
//!   TableInfo, in row format v2 and v1;
//! - `tidb/decode_and_render`: v2 decoding plus the JSON line `kvfeed watch --table` prints;
//! - `tidb/sequence`: the rows through `Sequencer` as a watcher feeds it (pushed out of order,
//!   then released in commit-ts order by one resolved ts each of the table and the job table),
//!   decoded on the way: what ordering costs beside `decode_v2`.
//!
//! 4096 distinct rows are written once, outside the timed loops; throughput is in rows.

use core::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed_benches::criterion_config as config;
use kvfeed_tidb::datum::Datum;
use kvfeed_tidb::decimal::Decimal;
use kvfeed_tidb::render::{self, Kind};
use kvfeed_tidb::schema::{CiStr, DbInfo};
use kvfeed_tidb::time::Time;
use kvfeed_tidb::{
    Catalog, Handle, RawChange, RecordKey, RowDecoder, Sequencer, Source, TableInfo, TableName,
    Value, row, value,
};

const ROWS: usize = 4096;

const TABLE: &str = r#"{"id": 112, "name": "orders", "pk_is_handle": true, "cols": [
  {"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 3}},
  {"id": 2, "name": "user_id", "state": 5, "type": {"Tp": 3, "Flag": 1}},
  {"id": 3, "name": "amount", "state": 5, "type": {"Tp": 246, "Flen": 12, "Decimal": 2}},
  {"id": 4, "name": "status", "state": 5, "type": {"Tp": 247, "Elems": ["new", "paid", "shipped"]}},
  {"id": 5, "name": "note", "state": 5, "type": {"Tp": 15, "Charset": "utf8mb4", "Collate": "utf8mb4_bin"}},
  {"id": 6, "name": "created_at", "state": 5, "type": {"Tp": 12, "Decimal": 6}},
  {"id": 7, "name": "updated_at", "state": 5, "type": {"Tp": 7, "Decimal": 0}},
  {"id": 8, "name": "score", "state": 5, "type": {"Tp": 5}},
  {"id": 9, "name": "flags", "state": 5, "type": {"Tp": 3, "Flag": 32}},
  {"id": 10, "name": "payload", "state": 5, "type": {"Tp": 252, "Charset": "binary", "Collate": "binary"}}]}"#;

/// Row `i`'s columns 2..=10 as values.
fn values(i: usize) -> Vec<Value> {
    let time = Time::parse("2026-12-03 09:41:07.123456", 6).unwrap();
    vec![
        Value::Int(i as i64 * 7919 % 100_000),
        Value::Decimal(Decimal::parse(&format!("{}.{:02}", i * 13 % 10_000, i % 100)).unwrap()),
        Value::Enum { index: (i % 3) as u64 + 1, name: String::new() },
        Value::Text(format!("order {i} for a customer")),
        Value::Datetime(time),
        Value::Timestamp(Time { microsecond: 0, fsp: 0, ..time }),
        Value::Double(i as f64 * 0.5),
        Value::Uint(i as u64 & 0xFF),
        Value::Bytes((0..32).map(|b| (b * i) as u8).collect()),
    ]
}

struct Fixture {
    decoder: RowDecoder,
    keys: Vec<Vec<u8>>,
    v2: Vec<Vec<u8>>,
    v1: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    let table = TableInfo::from_json(TABLE.as_bytes()).unwrap();
    let decoder = RowDecoder::new(table.clone()).unwrap();
    let (mut keys, mut v2, mut v1) = (vec![], vec![], vec![]);
    for i in 0..ROWS {
        keys.push(RecordKey { table_id: 112, handle: Handle::Int(i as i64) }.encode());
        let columns: Vec<_> = table.cols[1..].iter().zip(values(i)).collect();
        v2.push(row::write::v2(
            &columns
                .iter()
                .map(|(c, v)| (c.id, value::write::v2(&c.field_type, v)))
                .collect::<Vec<_>>(),
        ));
        v1.push(row::write::v1(
            &columns
                .iter()
                .map(|(c, v)| (c.id, value::write::datum(&c.field_type, v)))
                .collect::<Vec<(i64, Datum)>>(),
        ));
    }
    Fixture { decoder, keys, v2, v1 }
}

fn decode(c: &mut Criterion) {
    let fixture = fixture();
    let mut group = c.benchmark_group("tidb");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("copy_kv", |b| {
        b.iter(|| {
            for (key, value) in fixture.keys.iter().zip(&fixture.v2) {
                black_box((key.to_vec(), value.to_vec()));
            }
        })
    });
    for (name, values) in [("decode_v2", &fixture.v2), ("decode_v1", &fixture.v1)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for (key, value) in fixture.keys.iter().zip(values) {
                    let key = RecordKey::decode(key).unwrap();
                    black_box(fixture.decoder.decode(&key, value).unwrap());
                }
            })
        });
    }
    group.bench_function("decode_and_render", |b| {
        b.iter(|| {
            for (key, value) in fixture.keys.iter().zip(&fixture.v2) {
                let key = RecordKey::decode(key).unwrap();
                let row = fixture.decoder.decode(&key, value).unwrap();
                let line = render::event_line(
                    Kind::Insert,
                    "shop.orders",
                    Some(1),
                    &fixture.decoder,
                    None,
                    row.as_ref(),
                );
                black_box(line);
            }
        })
    });
    let catalog = || {
        let db = DbInfo { id: 2, db_name: CiStr::new("shop"), state: 5, ..DbInfo::default() };
        let table = TableInfo::from_json(TABLE.as_bytes()).unwrap();
        Catalog::from_snapshot(1, vec![db], vec![(2, table)]).unwrap()
    };
    let names = [TableName::new("shop", "orders")];
    // Commit ts: rows in pairs per ts, pushed in reverse (as an incremental scan sends them).
    let changes: Vec<RawChange> = (0..ROWS)
        .rev()
        .map(|i| RawChange {
            delete: false,
            key: fixture.keys[i].clone(),
            value: fixture.v2[i].clone(),
            old_value: None,
            start_ts: 100 + i as u64 / 2,
            commit_ts: 101 + i as u64 / 2,
        })
        .collect();
    group.bench_function("sequence", |b| {
        b.iter_batched(
            || (Sequencer::new(catalog(), None, &names, 100).unwrap(), changes.clone()),
            |(mut sequencer, changes)| {
                for change in changes {
                    sequencer.push(Source::Table(112), change);
                }
                sequencer.resolved(Source::Jobs, u64::MAX);
                sequencer.resolved(Source::Table(112), u64::MAX);
                let mut out = Vec::with_capacity(ROWS + 1);
                sequencer.advance(&mut out).unwrap();
                assert_eq!(out.len(), ROWS + 1);
                black_box(out)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode
}
criterion_main!(benches);
