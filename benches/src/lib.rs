//! Shared fixtures for kvfeed's criterion benchmarks (`benches/*.rs`).
//!
//! Every benchmark group measures kvfeed beside a baseline in the same run, so the figures can be
//! compared on a shared, noisy machine. Run them with `cargo xtask bench [AREA]`.

pub mod alloc_counter;
pub mod btree16;
pub mod go_rangelock;

use kvfeed_span::{EncodedKey, table};

/// The criterion settings of the benchmarks: short enough that a whole area runs in minutes on
/// the 2-core machine.
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
}

/// A cheap deterministic walk over `0..n` (a multiplicative step coprime with most sizes).
pub fn scatter(step: u64, n: u64) -> u64 {
    step.wrapping_mul(2_654_435_761) % n
}

/// The encoded key of row `i` of table 1: a realistic ~20-byte TiDB record key.
pub fn row_key(i: u64) -> EncodedKey {
    EncodedKey::encode(&table::record_key(1, i as i64))
}

pub mod frames {
    //! Encoded `ChangeDataEvent` frames of committed rows, shared by the transport and feed
    //! benchmarks, and the bare prost decode they are measured against.

    use std::hint::black_box;

    use bytes::Bytes;
    use kvfeed_proto::cdcpb::{self, ChangeDataEvent, event};
    use prost::Message as _;

    /// Rows per iteration, whatever the frame shape, so the two groups time similar amounts of work.
    pub const ROWS_PER_ITER: usize = 4096;

    /// One encoded frame of `rows` rows for region `region_id` of subscription `request_id`.
    pub fn frame(request_id: u64, region_id: u64, first_row: u64, rows: usize) -> Bytes {
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
    pub fn frames(rows_per_frame: usize) -> Vec<Bytes> {
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

    /// Decodes every frame with prost alone and counts its rows.
    pub fn prost_rows(frames: &[Bytes]) -> usize {
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
}
