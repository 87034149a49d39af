//! The rows a subscription delivered above its resolved ts, remembered so that none is delivered
//! twice ([`Config::exactly_once`](crate::Config::exactly_once)).
//!
//! A region is read again from its checkpoint (its resolved ts in the range lock) after any
//! error, split, merge or leader move, and TiKV sends again every row committed above it, some
//! of which the subscription delivered already. A row `(key, commit ts)` is remembered here from
//! its delivery until the subscription's published resolved ts reaches its commit ts: from then
//! on no region can send it again (every region is read from at or above that ts). Keyed by the
//! row's key, not its region, the record needs no carrying over when regions split or merge.
//!
//! Memory: one entry per row delivered in the unresolved window (its key copied, about 100
//! bytes of bookkeeping), counted in the client's memory budget with the prewrites'
//! bookkeeping ([`PrewriteCache::charge`]), and given back as rows are forgotten or the record
//! is dropped. The keys of one delivered batch share one buffer, freed with the batch's last
//! remembered row (a row outliving its batch-mates keeps their key bytes, uncounted: at most
//! the keys of one batch per such row).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::event::RowEvent;
use crate::prewrite_cache::PrewriteCache;

/// Bytes of bookkeeping per remembered row, besides its key.
const ENTRY_BYTES: usize = 96;

/// The rows delivered above the resolved ts. Invariant: `seen` and `by_ts` hold the same rows,
/// and `bytes` is their footprint.
#[derive(Debug)]
pub(crate) struct DeliveredRows {
    /// `(key, commit ts)` of each row, hashed with `hasher` over `(&[u8], u64)`. The keys of
    /// one batch share one buffer (one allocation per batch, not per row).
    seen: HashTable<(Bytes, u64)>,
    hasher: DefaultHashBuilder,
    /// The same rows by commit ts, for forgetting them in order.
    by_ts: BTreeMap<u64, Vec<Bytes>>,
    bytes: usize,
    /// Where the bytes are counted.
    budget: Arc<PrewriteCache>,
}

impl DeliveredRows {
    /// An empty record counting its bytes in `budget`.
    pub(crate) fn new(budget: Arc<PrewriteCache>) -> Self {
        Self {
            seen: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            by_ts: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    fn hash(hasher: &DefaultHashBuilder, key: &[u8], commit_ts: u64) -> u64 {
        hasher.hash_one((key, commit_ts))
    }

    /// Drops from `rows` the ones delivered before (and repeats within `rows`), and remembers
    /// the others; returns the bytes the record grew by.
    pub(crate) fn keep_new(&mut self, rows: &mut Vec<RowEvent>) -> usize {
        let before = self.bytes;
        // The record's own copy of the keys, one buffer for the batch: it must not pin the
        // batch's rows.
        let mut keys = BytesMut::with_capacity(rows.iter().map(|row| row.key.len()).sum());
        let Self { seen, hasher, by_ts, bytes, .. } = self;
        rows.retain(|row| {
            let (key, commit_ts) = (&row.key[..], row.commit_ts);
            let hash = Self::hash(hasher, key, commit_ts);
            let entry = seen.entry(
                hash,
                |(seen_key, seen_ts)| *seen_ts == commit_ts && seen_key[..] == *key,
                |(seen_key, seen_ts)| Self::hash(hasher, seen_key, *seen_ts),
            );
            let hashbrown::hash_table::Entry::Vacant(vacant) = entry else { return false };
            keys.extend_from_slice(key);
            let owned = keys.split().freeze();
            *bytes += owned.len() + ENTRY_BYTES;
            by_ts.entry(commit_ts).or_default().push(owned.clone());
            vacant.insert((owned, commit_ts));
            true
        });
        let added = self.bytes - before;
        self.budget.charge(added);
        added
    }

    /// Forgets the rows committed at or below `ts` (the published resolved ts); returns the
    /// bytes freed.
    pub(crate) fn forget_up_to(&mut self, ts: u64) -> usize {
        let before = self.bytes;
        let kept = self.by_ts.split_off(&ts.saturating_add(1));
        for (commit_ts, keys) in std::mem::replace(&mut self.by_ts, kept) {
            for key in keys {
                self.bytes -= key.len() + ENTRY_BYTES;
                let hash = Self::hash(&self.hasher, &key, commit_ts);
                let found = self.seen.find_entry(hash, |(seen_key, seen_ts)| {
                    *seen_ts == commit_ts && *seen_key == key
                });
                if let Ok(entry) = found {
                    entry.remove();
                }
            }
        }
        let freed = before - self.bytes;
        self.budget.release(freed);
        freed
    }

    /// Rows remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

impl Drop for DeliveredRows {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::Op;

    fn row(key: u8, commit_ts: u64) -> RowEvent {
        RowEvent::new(Op::Put, Bytes::from(vec![key]), Bytes::from_static(b"v"), None, 1, commit_ts)
    }

    fn record() -> (DeliveredRows, Arc<PrewriteCache>) {
        let budget = Arc::new(PrewriteCache::new(usize::MAX, None));
        (DeliveredRows::new(Arc::clone(&budget)), budget)
    }

    #[test]
    fn a_row_is_delivered_once_until_the_resolved_ts_passes_it() {
        let (mut record, budget) = record();
        let mut first = vec![row(1, 10), row(2, 11), row(1, 12)];
        assert!(record.keep_new(&mut first) > 0);
        assert_eq!(first.len(), 3);
        // Read again from a checkpoint: the same rows, and one new.
        let mut again = vec![row(1, 10), row(1, 12), row(3, 12), row(3, 12)];
        record.keep_new(&mut again);
        assert_eq!(again, vec![row(3, 12)]);
        assert_eq!(record.len(), 4);
        let freed = record.forget_up_to(11);
        assert_eq!(freed, 2 * (1 + ENTRY_BYTES));
        assert_eq!(record.len(), 2);
        assert_eq!(budget.memory_bytes(), 2 * (1 + ENTRY_BYTES), "counted in the budget");
        drop(record);
        assert_eq!(budget.memory_bytes(), 0, "given back on drop");
    }

    proptest! {
        /// Against a model (a set of every row delivered, and the resolved ts): a row is kept
        /// exactly when it is new above the resolved ts, and the byte count is the entries'.
        #[test]
        fn the_record_matches_a_model(
            steps in proptest::collection::vec((proptest::collection::vec((0u8..6, 0u64..30), 0..8), 0u64..4), 1..30),
        ) {
            let (mut record, budget) = record();
            let mut model: std::collections::HashSet<(u8, u64)> = std::collections::HashSet::new();
            let mut resolved = 0;
            for (batch, advance) in steps {
                // Rows at or below the resolved ts never come (the region pipeline refuses them).
                let mut rows: Vec<RowEvent> = batch
                    .iter()
                    .filter(|&&(_, ts)| ts > resolved)
                    .map(|&(key, ts)| row(key, ts))
                    .collect();
                let expected: Vec<(u8, u64)> = {
                    let mut seen = model.clone();
                    rows.iter().map(|r| (r.key[0], r.commit_ts)).filter(|r| seen.insert(*r)).collect()
                };
                record.keep_new(&mut rows);
                let kept: Vec<(u8, u64)> = rows.iter().map(|r| (r.key[0], r.commit_ts)).collect();
                prop_assert_eq!(&kept, &expected);
                model.extend(kept);
                resolved += advance;
                record.forget_up_to(resolved);
                model.retain(|&(_, ts)| ts > resolved);
                prop_assert_eq!(record.len(), model.len());
                prop_assert_eq!(record.bytes, model.len() * (1 + ENTRY_BYTES));
                prop_assert_eq!(budget.memory_bytes(), record.bytes);
            }
        }
    }
}
