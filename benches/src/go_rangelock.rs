//! A faithful model of TiCDC's Go range lock (`cdc/kv/regionlock`, as the reference describes
//! it in §3), the baseline of the rangelock benchmarks:
//!
//! - `locked_ranges`: a B-tree of degree 16 ([`BTree`], as `google/btree`) of pointers to
//!   locked entries keyed by start key, and `region_id -> entry` beside it;
//! - `unlocked_ranges`: the range-ts map, a degree-16 B-tree of `start -> (ts, is_set)` entries
//!   by value partitioning the span, updated on every lock (`unset`) and unlock (`set`);
//! - each entry's `LockedRangeState` inside the entry, as in Go: the worker keeps a pointer to
//!   the entry from the lock and advances the state with a compare-and-swap loop (the bare
//!   advance, no lookup);
//! - the subscription's resolved ts: a walk over every locked entry and every piece of the map.
//!
//! Keys compare as plain bytes, with the span's end a real key (no infinities), as in Go.
//! Waiting and stale requests are modelled only as far as their results: the benchmarks lock
//! free ranges.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::btree16::{BTree, Keyed};

/// What the lock's holder (the region worker) keeps: Go's `LockedRangeState`.
#[derive(Debug)]
pub struct LockedRangeState {
    /// The region's resolved ts.
    pub resolved_ts: AtomicU64,
    /// Whether its initial scan finished.
    pub initialized: AtomicBool,
    /// When it was locked.
    pub created: Instant,
}

impl LockedRangeState {
    /// The worker's update on a resolved-ts event: compare-and-swap up to `ts`.
    pub fn advance(&self, ts: u64) {
        let mut current = self.resolved_ts.load(Ordering::Acquire);
        while ts > current {
            match self.resolved_ts.compare_exchange_weak(
                current,
                ts,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }
}

/// Go's `rangeLockEntry`, shared by the lock's tree and map and the region's holder.
pub struct LockEntry {
    start: Vec<u8>,
    end: Vec<u8>,
    region_id: u64,
    version: u64,
    state: LockedRangeState,
    /// One-shot signal senders of the requests waiting for this entry (Go mutates them under
    /// the lock's mutex; here the entry is shared, so behind one of its own, never contended).
    waiters: std::sync::Mutex<Vec<std::sync::mpsc::SyncSender<()>>>,
}

impl LockEntry {
    /// The state the holder advances (Go's `LockRangeResult.LockedRangeState`).
    pub fn state(&self) -> &LockedRangeState {
        &self.state
    }
}

/// A B-tree item pointing at an entry, as Go's tree holds `*rangeLockEntry`.
struct EntryRef(Arc<LockEntry>);

impl Keyed for EntryRef {
    fn key(&self) -> &[u8] {
        &self.0.start
    }
}

/// Go's `rangeTsEntry`, stored by value.
struct RangeTsEntry {
    start: Vec<u8>,
    ts: u64,
    is_set: bool,
}

impl Keyed for RangeTsEntry {
    fn key(&self) -> &[u8] {
        &self.start
    }
}

/// Go's `rangeTsMap`: a partition of `[start, end)`, each entry running to the next one.
struct RangeTsMap {
    entries: BTree<RangeTsEntry>,
    end: Vec<u8>,
}

impl RangeTsMap {
    fn new(start: &[u8], end: &[u8], ts: u64) -> Self {
        let mut entries = BTree::default();
        entries.replace_or_insert(RangeTsEntry { start: start.to_vec(), ts, is_set: true });
        Self { entries, end: end.to_vec() }
    }

    /// The piece covering `key`.
    fn covering(&self, key: &[u8]) -> (u64, bool) {
        let piece = self.entries.last_at_or_below(key).expect("the span's start is a key");
        (piece.ts, piece.is_set)
    }

    /// Removes the entries starting in `[start, end)`.
    fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        let mut doomed = Vec::new();
        self.entries.ascend_range(start, Some(end), |entry| {
            doomed.push(entry.start.clone());
            true
        });
        for key in doomed {
            self.entries.delete(&key);
        }
    }

    fn set(&mut self, start: &[u8], end: &[u8], ts: u64) {
        if end != self.end.as_slice() && self.entries.get(end).is_none() {
            let (covering_ts, is_set) = self.covering(end);
            assert!(!is_set, "double set");
            let split = RangeTsEntry { start: end.to_vec(), ts: covering_ts, is_set };
            self.entries.replace_or_insert(split);
        }
        self.delete_range(start, end);
        self.entries.replace_or_insert(RangeTsEntry { start: start.to_vec(), ts, is_set: true });
    }

    fn unset(&mut self, start: &[u8], end: &[u8]) {
        if end != self.end.as_slice() {
            match self.entries.get(end).map(|entry| entry.is_set) {
                Some(false) => {
                    self.entries.delete(end);
                }
                Some(true) => {}
                None => {
                    let (ts, is_set) = self.covering(end);
                    assert!(is_set, "double unset");
                    self.entries.replace_or_insert(RangeTsEntry {
                        start: end.to_vec(),
                        ts,
                        is_set,
                    });
                }
            }
        }
        self.delete_range(start, end);
        let merged = self
            .entries
            .last_at_or_below(start)
            .is_some_and(|before| before.start.as_slice() < start && !before.is_set);
        if !merged {
            self.entries.replace_or_insert(RangeTsEntry {
                start: start.to_vec(),
                ts: 0,
                is_set: false,
            });
        }
    }

    /// The minimum ts over the pieces intersecting `[start, end)`.
    fn min_ts_in_range(&self, start: &[u8], end: &[u8]) -> u64 {
        let (mut min, is_set) = self.covering(start);
        assert!(is_set, "get after unset");
        self.entries.ascend_range(start, Some(end), |entry| {
            assert!(entry.is_set, "get after unset");
            min = min.min(entry.ts);
            true
        });
        min
    }

    /// The minimum ts over the set pieces: a walk over all of them.
    fn min_ts(&self) -> u64 {
        let mut min = u64::MAX;
        self.entries.ascend(|entry| {
            if entry.is_set {
                min = min.min(entry.ts);
            }
            true
        });
        min
    }
}

/// The result of a lock request.
pub enum LockResult {
    /// Locked: the entry the holder keeps, its state holding the checkpoint ts.
    Success(Arc<LockEntry>),
    /// A newer version holds part of the range.
    Stale,
    /// Older versions hold part of it: wait for these signals, then try again.
    Wait(Vec<std::sync::mpsc::Receiver<()>>),
}

/// The Go range lock of one subscription.
pub struct GoRangeLock {
    locked_ranges: BTree<EntryRef>,
    region_to_entry: HashMap<u64, Arc<LockEntry>>,
    unlocked_ranges: RangeTsMap,
}

impl GoRangeLock {
    /// A lock over `[start, end)` at `start_ts`.
    pub fn new(start: &[u8], end: &[u8], start_ts: u64) -> Self {
        Self {
            locked_ranges: BTree::default(),
            region_to_entry: HashMap::new(),
            unlocked_ranges: RangeTsMap::new(start, end, start_ts),
        }
    }

    /// Go's `tryLockRange`.
    pub fn lock(&mut self, start: &[u8], end: &[u8], region_id: u64, version: u64) -> LockResult {
        let mut overlapping: Vec<Arc<LockEntry>> = Vec::new();
        if let Some(EntryRef(before)) = self.locked_ranges.last_at_or_below(start)
            && before.start.as_slice() < start
            && start < before.end.as_slice()
        {
            overlapping.push(Arc::clone(before));
        }
        self.locked_ranges.ascend_range(start, Some(end), |EntryRef(entry)| {
            overlapping.push(Arc::clone(entry));
            true
        });
        if let Some(same) = self.region_to_entry.get(&region_id)
            && !overlapping.iter().any(|e| Arc::ptr_eq(e, same))
        {
            overlapping.push(Arc::clone(same));
        }
        if overlapping.is_empty() {
            let ts = self.unlocked_ranges.min_ts_in_range(start, end);
            let entry = Arc::new(LockEntry {
                start: start.to_vec(),
                end: end.to_vec(),
                region_id,
                version,
                state: LockedRangeState {
                    resolved_ts: AtomicU64::new(ts),
                    initialized: AtomicBool::new(false),
                    created: Instant::now(),
                },
                waiters: std::sync::Mutex::new(Vec::new()),
            });
            self.locked_ranges.replace_or_insert(EntryRef(Arc::clone(&entry)));
            self.region_to_entry.insert(region_id, Arc::clone(&entry));
            self.unlocked_ranges.unset(start, end);
            return LockResult::Success(entry);
        }
        if overlapping.iter().any(|entry| entry.version >= version) {
            return LockResult::Stale;
        }
        // A capacity-1 signal per entry waited for, its sender in the entry's waiters.
        let signals = overlapping
            .iter()
            .map(|entry| {
                let (sender, receiver) = std::sync::mpsc::sync_channel(1);
                entry.waiters.lock().expect("not poisoned").push(sender);
                receiver
            })
            .collect();
        LockResult::Wait(signals)
    }

    /// Go's `UnlockRange`: the entry must be the one `region_id` at `version` holds.
    pub fn unlock(&mut self, start: &[u8], end: &[u8], region_id: u64, version: u64) {
        let entry = match self.locked_ranges.get(start) {
            Some(EntryRef(entry)) => Arc::clone(entry),
            None => panic!("unlocking a range that is not locked"),
        };
        assert_eq!(entry.region_id, region_id, "unlocked by another region");
        let registered = self.region_to_entry.remove(&region_id).expect("the region's entry");
        assert!(Arc::ptr_eq(&registered, &entry), "not the region's entry");
        assert!(entry.version == version && entry.end.as_slice() == end, "unlock mismatch");
        for waiter in entry.waiters.lock().expect("not poisoned").drain(..) {
            let _ = waiter.try_send(());
        }
        self.locked_ranges.delete(start);
        let ts = entry.state.resolved_ts.load(Ordering::Acquire);
        self.unlocked_ranges.set(start, end, ts);
    }

    /// Go's `ResolvedTs`: every locked entry's state and every piece of the map, walked.
    pub fn resolved_ts(&self) -> u64 {
        let mut min = u64::MAX;
        self.locked_ranges.ascend(|EntryRef(entry)| {
            min = min.min(entry.state.resolved_ts.load(Ordering::Acquire));
            true
        });
        min.min(self.unlocked_ranges.min_ts())
    }

    /// The slowest and fastest region (Go's `IterAll` statistics): a walk over every entry.
    pub fn slowest_fastest(&self) -> (u64, u64) {
        let (mut slowest, mut fastest) = ((0, u64::MAX), (0, 0));
        self.locked_ranges.ascend(|EntryRef(entry)| {
            let ts = entry.state.resolved_ts.load(Ordering::Acquire);
            if ts < slowest.1 {
                slowest = (entry.region_id, ts);
            }
            if ts > fastest.1 {
                fastest = (entry.region_id, ts);
            }
            true
        });
        (slowest.0, fastest.0)
    }

    /// Number of locked ranges.
    pub fn len(&self) -> usize {
        self.locked_ranges.len()
    }

    /// Whether nothing is locked.
    pub fn is_empty(&self) -> bool {
        self.locked_ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    #[test]
    fn holes_keep_their_ts_and_the_minimum_covers_them() {
        let (start, end) = (key(0), key(100));
        let mut lock = GoRangeLock::new(&start, &end, 10);
        let states: Vec<_> = (0..10u64)
            .map(|i| match lock.lock(&key(i * 10), &key(i * 10 + 10), i, 1) {
                LockResult::Success(entry) => entry,
                _ => panic!("free range"),
            })
            .collect();
        assert_eq!(lock.resolved_ts(), 10);
        for entry in &states {
            entry.state().advance(20);
        }
        assert_eq!(lock.resolved_ts(), 20);
        states[3].state().advance(15); // never lowers
        lock.unlock(&key(30), &key(40), 3, 1);
        states[4].state().advance(30);
        assert_eq!(lock.resolved_ts(), 20);
        // The hole keeps 20; a new region over it starts there.
        let LockResult::Success(again) = lock.lock(&key(30), &key(40), 3, 2) else { panic!() };
        assert_eq!(again.state().resolved_ts.load(Ordering::Acquire), 20);
        assert!(matches!(lock.lock(&key(35), &key(36), 9, 1), LockResult::Stale));
        let LockResult::Wait(signals) = lock.lock(&key(35), &key(36), 9, 5) else { panic!() };
        assert_eq!(signals.len(), 2);
        // Unlocking a waited-for entry signals its waiter.
        lock.unlock(&key(30), &key(40), 3, 2);
        assert!(signals[0].try_recv().is_ok() && signals[1].try_recv().is_err());
        assert_eq!(lock.len(), 9);
    }
}
