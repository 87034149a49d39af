//! Receive-path benchmarks of `kvfeed-transport`, each beside bare prost decoding of the very same
//! encoded frames in the same run:
//!
//! - `transport/64x100B`: frames of 64 committed rows with 100-byte values and old values (about
//!   16 KB per frame, TiKV's typical batch of small rows);
//! - `transport/1x100B`: frames of a single such row (the per-frame overhead).
//!
//! In each group, `decode+demux` runs `kvfeed_transport::demux::decode_frame` and drains the
//! routed events (rows moved into domain rows, per-region events keyed by request and region id)
//! and `bare prost decode` only decodes the frame into `ChangeDataEvent` and counts its rows.
//! Throughput is in rows; frames are encoded once, outside the timed loops, and handed over as
//! `Bytes` clones (a reference count, as tonic hands frames to the receive loop).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed_benches::criterion_config as config;
use kvfeed_proto::cdcpb::{self, ChangeDataEvent, event};
use kvfeed_transport::demux::{Route, decode_frame};
use kvfeed_transport::{RegionEvent, StreamEvent};
use prost::Message as _;

/// Rows per iteration, whatever the frame shape, so the two groups time similar amounts of work.
const ROWS_PER_ITER: usize = 4096;

/// One encoded frame of `rows` rows for region `region_id` of subscription `request_id`.
fn frame(request_id: u64, region_id: u64, first_row: u64, rows: usize) -> Bytes {
    let entries = (0..rows as u64)
        .map(|i| {
            let n = first_row + i;
            event::Row {
                start_ts: 440_000_000_000_000 + n,
                commit_ts: 440_000_000_000_100 + n,
                r#type: event::LogType::Committed as i32,
                op_type: event::row::OpType::Put as i32,
                // A TiDB record key: t{table}_r{handle}, 19 bytes.
                key: Bytes::from(kvfeed_span::table::record_key(42, n as i64)),
                value: Bytes::from(vec![b'v'; 100]),
                old_value: Bytes::from(vec![b'o'; 100]),
                ..event::Row::default()
            }
        })
        .collect();
    let message = ChangeDataEvent {
        events: vec![cdcpb::Event {
            region_id,
            request_id,
            index: 7,
            event: Some(event::Event::Entries(event::Entries { entries })),
        }],
        resolved_ts: None,
    };
    Bytes::from(message.encode_to_vec())
}

/// `ROWS_PER_ITER / rows_per_frame` frames, spread over 8 regions of 2 subscriptions.
fn frames(rows_per_frame: usize) -> Vec<Bytes> {
    (0..ROWS_PER_ITER / rows_per_frame)
        .map(|i| {
            frame(
                1 + (i % 2) as u64,
                100 + (i % 8) as u64,
                (i * rows_per_frame) as u64,
                rows_per_frame,
            )
        })
        .collect()
}

fn demux_rows(frames: &[Bytes]) -> usize {
    let route = Route { store_id: 1, owner: None };
    let mut rows = 0;
    for frame in frames {
        for event in decode_frame(frame.clone(), route).expect("valid frame") {
            if let StreamEvent::Region { event: RegionEvent::Rows(batch), .. } = &event {
                rows += batch.len();
            }
            black_box(event);
        }
    }
    rows
}

fn prost_rows(frames: &[Bytes]) -> usize {
    let mut rows = 0;
    for frame in frames {
        let message = ChangeDataEvent::decode(frame.clone()).expect("valid frame");
        for event in &message.events {
            if let Some(event::Event::Entries(entries)) = &event.event {
                rows += entries.entries.len();
            }
        }
        black_box(message);
    }
    rows
}

fn receive_path(c: &mut Criterion) {
    for (name, rows_per_frame) in [("transport/64x100B", 64), ("transport/1x100B", 1)] {
        let frames = frames(rows_per_frame);
        assert_eq!(demux_rows(&frames), ROWS_PER_ITER);
        assert_eq!(prost_rows(&frames), ROWS_PER_ITER);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(ROWS_PER_ITER as u64));
        group.bench_function("decode+demux", |b| b.iter(|| demux_rows(black_box(&frames))));
        group.bench_function("bare prost decode", |b| b.iter(|| prost_rows(black_box(&frames))));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = receive_path
}
criterion_main!(benches);
