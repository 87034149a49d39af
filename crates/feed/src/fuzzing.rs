//! Fuzz entry points (compiled under `cfg(fuzzing)`, which cargo-fuzz sets, and under
//! `cfg(test)`, where a seeded loop drives the same checks). Not part of the crate's API.
//!
//! - [`spill_files`]: arbitrary bytes as a script of appends (records from empty to larger
//!   than a segment and than the write buffer), takes and frees on one spill store with small
//!   segments, against a model: every record comes back as written, and the store closes its
//!   segments once they are empty.
//! - [`region_rows`]: arbitrary bytes as a script of rows (every kind, including unknown ones;
//!   keys in and out of the region's span; any timestamps) and resolved-ts advances through one
//!   [`RegionRows`]. It must never panic, and every delivered row must keep the pipeline's
//!   promises: key in the span, commit ts above the transaction's start ts, above the
//!   subscription's start ts and above the region's resolved ts at delivery; a COMMIT carries
//!   the value of a PREWRITE of its transaction and key. The first byte chooses where the
//!   prewrites wait: in memory, or every value on disk (a cache with no memory share); either
//!   way the cache holds nothing once the region is gone.

use std::sync::Arc;

use bytes::Bytes;
use kvfeed_span::Span;
use kvfeed_transport::{Row, RowKind, RowOp};

use crate::prewrite_cache::PrewriteCache;
use crate::region::RegionRows;
use crate::spill::{SpillFiles, SpillRef};

/// The raw keys a script draws from: inside, at the edges of and outside the span `[b, d)`.
const KEYS: [&[u8]; 6] = [b"a", b"b", b"b\0", b"c", b"cz", b"d"];

/// Runs the script in `data`; panics if a delivered row breaks a promise.
pub fn region_rows(data: &[u8]) {
    let span = Span::from_bytes(&kvfeed_span::key::encode(b"b"), &kvfeed_span::key::encode(b"d"))
        .expect("b < d");
    let start_ts = 10;
    let Some((&choice, data)) = data.split_first() else { return };
    let share = if choice % 2 == 0 { usize::MAX } else { 0 };
    let cache = Arc::new(PrewriteCache::new(share, Some(std::env::temp_dir())));
    let mut rows = RegionRows::new(span.clone(), start_ts, 20);
    let mut out = Vec::new();
    // Every prewrite value sent per (start ts, key), to check what commits carry.
    let mut prewritten: Vec<((u64, Bytes), Bytes)> = Vec::new();
    for step in data.chunks_exact(4) {
        let [op, key, a, b] = [step[0], step[1], step[2], step[3]];
        let key = Bytes::from_static(KEYS[usize::from(key) % KEYS.len()]);
        let (start, commit) = (u64::from(a % 64), u64::from(b % 64));
        if op % 8 == 7 {
            rows.advance(u64::from(a));
            continue;
        }
        let kind = match op % 8 {
            0 => RowKind::Prewrite,
            1 => RowKind::Commit,
            2 => RowKind::Rollback,
            3 => RowKind::Committed,
            4 => RowKind::Initialized,
            5 => RowKind::Unspecified,
            _ => RowKind::Unknown(i32::from(op)),
        };
        let value = if b % 3 == 0 { Bytes::new() } else { Bytes::from(vec![b; 2]) };
        if kind == RowKind::Prewrite {
            prewritten.push(((start, key.clone()), value.clone()));
        }
        let row = Row {
            start_ts: start,
            commit_ts: if matches!(kind, RowKind::Commit | RowKind::Committed) {
                commit
            } else {
                0
            },
            kind,
            op: match op / 8 % 4 {
                0 => RowOp::Put,
                1 => RowOp::Delete,
                2 => RowOp::Unspecified,
                _ => RowOp::Unknown(9),
            },
            key,
            value,
            old_value: Bytes::new(),
            txn_source: 0,
            generation: 0,
        };
        let resolved_before = rows.resolved_ts();
        out.clear();
        let result = rows.apply([row.clone()], &cache, &mut out);
        for delivered in &out {
            assert!(span.contains_raw_key(&delivered.key), "out of span: {delivered:?}");
            assert!(delivered.commit_ts > delivered.start_ts, "commit not after start");
            assert!(delivered.commit_ts > start_ts, "at or below the subscription's start");
            assert!(delivered.commit_ts > resolved_before, "at or below the resolved ts");
            if row.kind == RowKind::Commit && delivered.start_ts == row.start_ts {
                let id = (delivered.start_ts, delivered.key.clone());
                let known = prewritten.iter().any(|(p, v)| *p == id && *v == delivered.value);
                assert!(known, "a commit carries a prewrite's value: {delivered:?}");
            }
        }
        if result.is_err() {
            // The region is re-requested after an error: a fresh pipeline from its resolved ts.
            rows = RegionRows::new(span.clone(), start_ts, rows.resolved_ts());
        }
    }
    drop(rows);
    assert_eq!((cache.memory_bytes(), cache.disk_bytes()), (0, 0), "the cache got every byte back");
}

/// Runs the store script in `data`; panics if a record comes back other than written.
pub fn spill_files(data: &[u8]) {
    let mut files = SpillFiles::new(std::env::temp_dir(), 64 << 10);
    let mut model: Vec<(SpillRef, Vec<u8>)> = Vec::new();
    for step in data.chunks_exact(3) {
        let [op, a, b] = [step[0], step[1], step[2]];
        match op % 4 {
            0 | 1 => {
                // Up to 255 << 11 bytes: past the segment (64 KiB) and the write buffer.
                let len = usize::from(a) << (b % 12);
                let bytes: Vec<u8> = (0..len).map(|i| (i as u8) ^ b).collect();
                let (front, back) = bytes.split_at(len / 2);
                let at = files.append(&[front, back]).expect("append to a temporary file");
                model.push((at, bytes));
            }
            2 if !model.is_empty() => {
                let (at, bytes) = model.swap_remove(usize::from(a) % model.len());
                assert_eq!(files.take(at).expect("read back"), bytes, "record {at:?}");
            }
            3 if !model.is_empty() => {
                let (at, _) = model.swap_remove(usize::from(a) % model.len());
                files.free(at);
            }
            _ => {}
        }
        let live: usize = model.iter().map(|(_, bytes)| bytes.len()).sum();
        assert_eq!(files.live_bytes(), live as u64);
    }
    for (at, bytes) in model {
        assert_eq!(files.take(at).expect("read back"), bytes, "record {at:?}");
    }
    assert!(files.segment_count() <= 1, "empty segments are closed");
}

#[cfg(test)]
mod tests {
    /// Seeded pseudo-random scripts of up to `max_len` bytes.
    fn scripts(count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..count).map(move |len| {
            (0..len % max_len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        })
    }

    #[test]
    fn seeded_scripts_keep_the_promises() {
        for data in scripts(2000, 256) {
            super::region_rows(&data);
        }
    }

    #[test]
    fn seeded_spill_scripts_read_back_what_was_written() {
        for data in scripts(200, 120) {
            super::spill_files(&data);
        }
    }
}
