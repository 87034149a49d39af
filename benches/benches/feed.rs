//! Row-pipeline benchmarks of `kvfeed`, each beside a baseline in the same run:
//!
//! - `feed/matcher`: one region's PREWRITE + COMMIT pairs (19-byte keys, 100-byte values and
//!   old values, the commit without its value, as TiKV sends live writes) through
//!   [`RegionRows`], delivering each pair as one row event; the baseline is the original's data
//!   structure alone: a std `HashMap` keyed by `(start ts, key bytes)` with an insert and a
//!   remove per pair, delivering nothing. The pipeline runs with the client's default prewrite
//!   cache (spilling on, a transaction that fits its memory share), with spilling off, and with
//!   every value spilled to disk (a cache with no memory share: a huge transaction's cost).
//! - `feed/committed`: scan output (COMMITTED rows) through [`RegionRows`] (span filter,
//!   start-ts skip, resolved-ts check, conversion) beside a loop that only copies the rows.
//!
//! - `feed/pipeline`: the receive hot path on one core: encoded frames of 64 committed rows
//!   (100-byte values and old values) through decode and demultiplexing
//!   (`kvfeed_transport::demux`), the region's [`RegionRows`] (looked up per event as the
//!   worker does) and delivery over a tokio channel to a reader; beside bare prost decode of the
//!   same frames.
//! - `feed/resolved_batch_10k`: one TiKV resolved-ts batch of 10k regions applied as the worker
//!   does (each region's [`RegionRows`], then one range-lock advance through the regions'
//!   handles and the subscription's resolved ts); beside the Go lock's model (a bare advance
//!   through each held entry, then `ResolvedTs`'s walk).
//!
//! Throughput is in rows (pairs count once) or regions.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed::{PrewriteCache, RegionRows, RowEvent};
use kvfeed_benches::criterion_config as config;
use kvfeed_benches::frames::{ROWS_PER_ITER, frames, prost_rows};
use kvfeed_benches::go_rangelock::{GoRangeLock, LockResult};
use kvfeed_benches::row_key;
use kvfeed_rangelock::RangeLock;
use kvfeed_span::Span;
use kvfeed_span::table::{record_key, table_span};
use kvfeed_transport::demux::{Route, decode_frame};
use kvfeed_transport::{RegionEvent, Row, RowKind, RowOp, StreamEvent};

const PAIRS: u64 = 4096;

/// A prewrite cache as the client's default (1 GiB quota: a 256 MiB memory share, spilling
/// on): nothing these benches hold reaches disk.
static CACHE: LazyLock<Arc<PrewriteCache>> =
    LazyLock::new(|| Arc::new(PrewriteCache::new(256 << 20, Some(std::env::temp_dir()))));

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
    let caches = [
        ("RegionRows prewrite+commit", Arc::clone(&CACHE)),
        ("RegionRows prewrite+commit, spill off", Arc::new(PrewriteCache::new(256 << 20, None))),
        (
            "RegionRows prewrite+commit, every value spilled",
            Arc::new(PrewriteCache::new(0, Some(std::env::temp_dir()))),
        ),
    ];
    for (name, cache) in caches {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(PAIRS as usize);
            b.iter(|| {
                let mut region = RegionRows::new(table_span(42), 500, 900);
                region.apply([initialized()], &cache, &mut out).unwrap();
                out.clear();
                region.apply(rows.iter().cloned(), &cache, &mut out).unwrap();
                black_box(out.len())
            });
        });
    }
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
            region.apply(rows.iter().cloned(), &CACHE, &mut out).unwrap();
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

/// Frames through decode, demultiplexing, the region's row pipeline and a channel to a reader;
/// returns the rows the reader got.
fn pipeline_rows(
    frames: &[Bytes],
    regions: &mut hashbrown_free::Regions,
    sender: &tokio::sync::mpsc::UnboundedSender<Vec<RowEvent>>,
    receiver: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<RowEvent>>,
) -> usize {
    let route = Route { store_id: 1, owner: None };
    let mut delivered = 0;
    for frame in frames {
        for event in decode_frame(frame.clone(), route).expect("valid frame") {
            if let StreamEvent::Region {
                request_id,
                region_id,
                event: RegionEvent::Rows(rows),
                ..
            } = event
            {
                let region =
                    regions.entry((request_id, region_id)).or_insert_with(initialized_region);
                let mut out = Vec::with_capacity(rows.len());
                region.apply(rows, &CACHE, &mut out).expect("valid rows");
                sender.send(out).expect("reader alive");
            }
        }
        while let Ok(batch) = receiver.try_recv() {
            delivered += batch.len();
            black_box(batch);
        }
    }
    delivered
}

mod hashbrown_free {
    //! The worker's per-region map, with std's map (the bench crate does not depend on
    //! hashbrown).
    pub type Regions = std::collections::HashMap<(u64, u64), kvfeed::RegionRows>;
}

fn initialized_region() -> RegionRows {
    let mut region = RegionRows::new(Span::full(), 0, 0);
    region.apply([initialized()], &CACHE, &mut Vec::new()).expect("initialized");
    region
}

fn pipeline(c: &mut Criterion) {
    let frames = frames(64);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut regions = hashbrown_free::Regions::new();
    assert_eq!(pipeline_rows(&frames, &mut regions, &sender, &mut receiver), ROWS_PER_ITER);
    let mut group = c.benchmark_group("feed/pipeline");
    group.throughput(Throughput::Elements(ROWS_PER_ITER as u64));
    group.bench_function("decode+demux+match+deliver", |b| {
        b.iter(|| pipeline_rows(black_box(&frames), &mut regions, &sender, &mut receiver));
    });
    group.bench_function("bare prost decode", |b| b.iter(|| prost_rows(black_box(&frames))));
    group.finish();
}

fn resolved_batch(c: &mut Criterion) {
    const REGIONS: u64 = 10_000;
    let mut lock = RangeLock::new(Span::full(), 1);
    let mut rows: hashbrown_free::Regions = hashbrown_free::Regions::new();
    let mut handles = Vec::new();
    let key = |i: u64| row_key(i).as_bytes().to_vec();
    let mut model = GoRangeLock::new(&key(0), &key(REGIONS), 1);
    let mut entries = Vec::new();
    for id in 0..REGIONS {
        let start = if id == 0 { kvfeed_span::EncodedKey::default() } else { row_key(id) };
        let end =
            if id + 1 == REGIONS { kvfeed_span::EncodedKey::default() } else { row_key(id + 1) };
        let span = Span::new(start.clone(), end.clone()).expect("ordered keys");
        let _ = lock.lock(&span, id + 1, 1).expect("inside the span");
        lock.mark_initialized(id + 1);
        handles.push(lock.handle(id + 1).expect("locked"));
        let mut region = RegionRows::new(span, 0, 1);
        region.apply([initialized()], &CACHE, &mut Vec::new()).expect("initialized");
        rows.insert((1, id + 1), region);
        match model.lock(&key(id), &key(id + 1), id + 1, 1) {
            LockResult::Success(entry) => entries.push(entry),
            _ => panic!("free range"),
        }
    }
    let batch: Vec<u64> = (1..=REGIONS).collect();
    let mut group = c.benchmark_group("feed/resolved_batch_10k");
    group.throughput(Throughput::Elements(REGIONS));
    let mut ts = 10;
    group.bench_function("RegionRows + RangeLock::advance_handles", |b| {
        let mut advanced = Vec::with_capacity(REGIONS as usize);
        b.iter(|| {
            ts += 1;
            advanced.clear();
            for &region in &batch {
                if rows.get_mut(&(1, region)).is_some_and(|r| r.advance(ts)) {
                    advanced.push(handles[region as usize - 1]);
                }
            }
            lock.advance_handles(advanced.iter().copied(), ts);
            black_box(lock.resolved_ts())
        });
    });
    let mut ts = 10;
    group.bench_function("baseline Go model (bare advance + ResolvedTs walk)", |b| {
        b.iter(|| {
            ts += 1;
            for entry in &entries {
                entry.state().advance(ts);
            }
            black_box(model.resolved_ts())
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = matcher, committed, pipeline, resolved_batch
}
criterion_main!(benches);
