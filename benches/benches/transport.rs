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
use kvfeed_benches::frames::{ROWS_PER_ITER, frames, prost_rows};
use kvfeed_transport::demux::{Route, decode_frame};
use kvfeed_transport::{RegionEvent, StreamEvent};

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
