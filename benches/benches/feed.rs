//! Row-pipeline benchmarks of `kvfeed`, each beside a baseline in the same run:
//!
//! - `feed/matcher`: one region's PREWRITE + COMMIT pairs (19-byte keys, 100-byte values and
//!   old values, the commit without its value, as TiKV sends live writes) through
//!   [`RegionRows`], delivering each pair as one row event; the baseline is the original's data
//!   structure alone: a std `HashMap` keyed by `(start ts, key bytes)` with an insert and a
//!   remove per pair, delivering nothing.
//! - `feed/committed`: scan output (COMMITTED rows) through [`RegionRows`] (span filter,
//!   start-ts skip, resolved-ts check, conversion) beside a loop that only copies the rows.
//!
//! Throughput is in rows (pairs count once).

use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed::RegionRows;
use kvfeed_benches::criterion_config as config;
use kvfeed_span::table::{record_key, table_span};
use kvfeed_transport::{Row, RowKind, RowOp};

const PAIRS: u64 = 4096;

fn row(kind: RowKind, n: u64, with_value: bool) -> Row {
    let commit = matches!(kind, RowKind::Commit | RowKind::Committed);
    Row {
        start_ts: 1_000 + n,
        commit_ts: if commit { 1_000_000 + n } else { 0 },
        kind,
        op: RowOp::Put,
        key: Bytes::from(record_key(42, n as i64)),
        value: if with_value { Bytes::from(vec![b'v'; 100]) } else { Bytes::new() },
        old_value: if with_value { Bytes::from(vec![b'o'; 100]) } else { Bytes::new() },
        txn_source: 0,
        generation: 0,
    }
}

fn initialized() -> Row {
    Row { kind: RowKind::Initialized, op: RowOp::Unspecified, ..row(RowKind::Prewrite, 0, false) }
}

fn matcher(c: &mut Criterion) {
    let rows: Vec<Row> = (0..PAIRS)
        .flat_map(|n| [row(RowKind::Prewrite, n, true), row(RowKind::Commit, n, false)])
        .collect();
    let mut group = c.benchmark_group("feed/matcher");
    group.throughput(Throughput::Elements(PAIRS));
    group.bench_function("RegionRows prewrite+commit", |b| {
        let mut out = Vec::with_capacity(PAIRS as usize);
        b.iter(|| {
            let mut region = RegionRows::new(table_span(42), 500, 900);
            region.apply([initialized()], &mut out).unwrap();
            out.clear();
            region.apply(rows.iter().cloned(), &mut out).unwrap();
            black_box(out.len())
        });
    });
    group.bench_function("baseline HashMap insert+remove", |b| {
        b.iter(|| {
            let mut pending: HashMap<(u64, Vec<u8>), Row> = HashMap::new();
            let mut matched = 0usize;
            for pair in rows.chunks_exact(2) {
                let (prewrite, commit) = (&pair[0], &pair[1]);
                pending.insert((prewrite.start_ts, prewrite.key.to_vec()), prewrite.clone());
                if pending.remove(&(commit.start_ts, commit.key.to_vec())).is_some() {
                    matched += 1;
                }
            }
            black_box(matched)
        });
    });
    group.finish();
}

fn committed(c: &mut Criterion) {
    let rows: Vec<Row> = (0..PAIRS).map(|n| row(RowKind::Committed, n, true)).collect();
    let mut group = c.benchmark_group("feed/committed");
    group.throughput(Throughput::Elements(PAIRS));
    group.bench_function("RegionRows committed", |b| {
        let mut out = Vec::with_capacity(PAIRS as usize);
        b.iter(|| {
            let mut region = RegionRows::new(table_span(42), 500, 900);
            out.clear();
            region.apply(rows.iter().cloned(), &mut out).unwrap();
            black_box(out.len())
        });
    });
    group.bench_function("baseline clone", |b| {
        b.iter(|| {
            let copied: Vec<Row> = rows.to_vec();
            black_box(copied.len())
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = matcher, committed
}
criterion_main!(benches);
