//! Shared fixtures for kvfeed's criterion benchmarks (`benches/*.rs`).
//!
//! Every benchmark group measures kvfeed beside a baseline in the same run, so the figures can be
//! compared on a shared, noisy machine. Run them with `cargo xtask bench [AREA]`.

pub mod alloc_counter;

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

pub mod original_rangelock {
    //! The original's range lock algorithm, as the baseline of the rangelock benchmarks: a
    //! B-tree of locked entries keyed by start, a B-tree range-ts map of the unlocked parts, each
    //! region's resolved ts behind a shared slot (the Go client's pointer), and a full scan of
    //! both for the subscription's resolved ts. Only the paths the benchmarks use are here.

    use std::collections::{BTreeMap, HashMap};

    struct Entry {
        end: Vec<u8>,
        region_id: u64,
        version: u64,
    }

    /// A simplified original range lock over `(-inf, +inf)`.
    #[derive(Default)]
    pub struct OriginalRangeLock {
        locked: BTreeMap<Vec<u8>, Entry>,
        by_region: HashMap<u64, Vec<u8>>,
        /// Resolved ts per region id (the shared `LockedRangeState` of the original).
        states: HashMap<u64, u64>,
        /// Unlocked pieces: start -> (ts, is_set). `is_set == false` marks locked pieces.
        unlocked: BTreeMap<Vec<u8>, (u64, bool)>,
    }

    impl OriginalRangeLock {
        /// An empty lock whose whole span holds `start_ts`.
        pub fn new(start_ts: u64) -> Self {
            let mut lock = Self::default();
            lock.unlocked.insert(Vec::new(), (start_ts, true));
            lock
        }

        /// Locks `[start, end)` (assumed free) and returns its checkpoint ts.
        pub fn lock(&mut self, start: &[u8], end: &[u8], region_id: u64, version: u64) -> u64 {
            if let Some((_, e)) = self.locked.range(..=start.to_vec()).next_back()
                && (e.end.is_empty() || e.end.as_slice() > start)
            {
                panic!("benchmark locks free ranges only");
            }
            let ts =
                self.unlocked.range(..=start.to_vec()).next_back().map_or(u64::MAX, |(_, v)| v.0);
            if !end.is_empty() && !self.unlocked.contains_key(end) {
                self.unlocked.insert(end.to_vec(), (ts, true));
            }
            self.unlocked.insert(start.to_vec(), (0, false));
            self.locked.insert(start.to_vec(), Entry { end: end.to_vec(), region_id, version });
            self.by_region.insert(region_id, start.to_vec());
            self.states.insert(region_id, ts);
            ts
        }

        /// Unlocks `[start, end)`, leaving the region's resolved ts behind.
        pub fn unlock(&mut self, start: &[u8], region_id: u64, version: u64) {
            let entry = self.locked.remove(start).expect("locked");
            assert!(entry.region_id == region_id && entry.version == version);
            self.by_region.remove(&region_id);
            let ts = self.states.remove(&region_id).expect("state");
            self.unlocked.insert(start.to_vec(), (ts, true));
        }

        /// Raises a region's resolved ts (the original's CAS-max on the shared state).
        pub fn advance(&mut self, region_id: u64, ts: u64) {
            if let Some(state) = self.states.get_mut(&region_id) {
                *state = (*state).max(ts);
            }
        }

        /// The subscription's resolved ts: a full scan of locked entries and unlocked pieces.
        pub fn resolved_ts(&self) -> u64 {
            let locked = self.locked.values().map(|e| self.states[&e.region_id]).min();
            let unlocked = self.unlocked.values().filter(|(_, set)| *set).map(|(ts, _)| *ts).min();
            locked.unwrap_or(u64::MAX).min(unlocked.unwrap_or(u64::MAX))
        }

        /// Slowest and fastest region over the locked entries (the original's `IterAll`).
        pub fn slowest_fastest(&self) -> (u64, u64) {
            let mut slowest = (0, u64::MAX);
            let mut fastest = (0, 0);
            for e in self.locked.values() {
                let ts = self.states[&e.region_id];
                if ts < slowest.1 {
                    slowest = (e.region_id, ts);
                }
                if ts > fastest.1 {
                    fastest = (e.region_id, ts);
                }
            }
            (slowest.0, fastest.0)
        }

        /// The number of locked entries.
        pub fn len(&self) -> usize {
            self.locked.len()
        }

        /// Whether nothing is locked.
        pub fn is_empty(&self) -> bool {
            self.locked.is_empty()
        }
    }
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
