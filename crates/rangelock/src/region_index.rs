//! Region id -> slot of its locked range, and where in the piece index that range was last
//! found: an open-addressing table whose lookups can be started early.
//!
//! An unlock knows its region id before anything else, and at a million regions every step of
//! finding its range is a cache miss. The region's entry gives the range's slot and a *leaf
//! hint* (the piece-index leaf where the range was locked), so the unlock can start from that
//! leaf, and request the slot, instead of descending the index from the root: the entry's miss
//! overlaps the caller's own (reading the range it passes), and the leaf's overlaps the slot's.
//! The hint is only a hint: a leaf split or merged since is detected, and the unlock descends.
//!
//! A general-purpose hash map hides where an entry lives; this table is linear probing over one
//! array of 16-byte entries (four to a cache line), so a region's entry is usually in the one
//! line its hash points at, and that line's address is known from the id alone
//! ([`RegionIndex::prefetch`]).
//!
//! Removal shifts the following entries of the probe run back (no tombstones), so a long-lived
//! lock with churning regions never degrades. The table grows at 3/4 full.
//!
//! Region ids come from PD. Ids chosen to collide can only lengthen probe runs (time, never
//! correctness), and each table mixes the ids with a seed of its own so that one fixed id set
//! does not collide in every table.

use alloc::vec::Vec;

use crate::prefetch::prefetch;

/// A slot value that marks an empty entry (slots are below `u32::MAX`).
const EMPTY: u32 = u32::MAX;
/// Multiplier of the hash (2^64 / golden ratio, odd): spreads consecutive ids across the table.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Copy, Debug)]
#[repr(align(16))]
struct Entry {
    region: u64,
    slot: u32,
    leaf_hint: u32,
}

impl Entry {
    const VACANT: Self = Self { region: 0, slot: EMPTY, leaf_hint: 0 };

    fn is_empty(&self) -> bool {
        self.slot == EMPTY
    }
}

/// Invariants: `entries.len()` is `1 << bits`, a power of two of at least 8; `len` entries are
/// occupied and `len <= 3/4` of them; every occupied entry is reachable from its home index
/// ([`RegionIndex::home`]) through occupied entries only; no region appears twice.
#[derive(Clone, Debug)]
pub(crate) struct RegionIndex {
    entries: Vec<Entry>,
    bits: u32,
    len: usize,
    seed: u64,
}

impl RegionIndex {
    /// A table with room for `regions` regions before it grows.
    pub(crate) fn with_capacity(regions: usize) -> Self {
        let room = (regions.saturating_mul(4) / 3 + 1).max(8).next_power_of_two();
        let mut index = Self { entries: Vec::new(), bits: 0, len: 0, seed: 0 };
        index.allocate(room);
        index
    }

    /// Empty entries for `room` (a power of two), with a seed of this allocation's own.
    fn allocate(&mut self, room: usize) {
        self.entries = alloc::vec![Entry::VACANT; room];
        self.bits = room.trailing_zeros();
        // Where the allocator put the array: differs between tables and between runs.
        self.seed = (self.entries.as_ptr() as usize as u64).wrapping_mul(SPREAD).rotate_left(29);
    }

    /// Heap bytes of the table, as allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<Entry>()
    }

    /// Number of regions.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether no region is indexed.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// The index a region's probe run starts at.
    #[inline]
    fn home(&self, region: u64) -> usize {
        // Fibonacci hashing: the high bits of the product depend on all the bits of the id.
        ((region ^ self.seed).wrapping_mul(SPREAD) >> (64 - self.bits)) as usize
    }

    /// Requests the cache line where `region`'s probe starts, for a lookup soon after.
    #[inline]
    pub(crate) fn prefetch(&self, region: u64) {
        prefetch(&self.entries[self.home(region)]);
    }

    /// The index of `region`'s entry, or of the empty entry ending its probe run.
    #[inline]
    fn find(&self, region: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(region);
        loop {
            let entry = &self.entries[i];
            if entry.is_empty() {
                return (i, false);
            }
            if entry.region == region {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot of `region`'s locked range.
    #[inline]
    pub(crate) fn get(&self, region: u64) -> Option<u32> {
        self.get_with_hint(region).map(|(slot, _)| slot)
    }

    /// The slot of `region`'s locked range and its leaf hint.
    #[inline]
    pub(crate) fn get_with_hint(&self, region: u64) -> Option<(u32, u32)> {
        match self.find(region) {
            (i, true) => Some((self.entries[i].slot, self.entries[i].leaf_hint)),
            (_, false) => None,
        }
    }

    /// Indexes `region` at `slot` (below `u32::MAX`) with a leaf hint, returning the slot it had.
    pub(crate) fn insert(&mut self, region: u64, slot: u32, leaf_hint: u32) -> Option<u32> {
        debug_assert_ne!(slot, EMPTY, "slots are below u32::MAX");
        match self.find(region) {
            (i, true) => {
                self.entries[i].leaf_hint = leaf_hint;
                Some(core::mem::replace(&mut self.entries[i].slot, slot))
            }
            (i, false) => {
                if (self.len + 1) * 4 > self.entries.len() * 3 {
                    self.grow();
                    return self.insert(region, slot, leaf_hint);
                }
                self.entries[i] = Entry { region, slot, leaf_hint };
                self.len += 1;
                None
            }
        }
    }

    /// Removes `region`, returning its slot.
    pub(crate) fn remove(&mut self, region: u64) -> Option<u32> {
        let (mut hole, true) = self.find(region) else { return None };
        let slot = self.entries[hole].slot;
        // Shift back every later entry of the run that may move into the hole: one whose home is
        // not between the hole (exclusive) and itself.
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let entry = self.entries[next];
            if entry.is_empty() {
                break;
            }
            let from_home = next.wrapping_sub(self.home(entry.region)) & mask;
            let from_hole = next.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.entries[hole] = entry;
                hole = next;
            }
        }
        self.entries[hole] = Entry::VACANT;
        self.len -= 1;
        Some(slot)
    }

    fn grow(&mut self) {
        let old = core::mem::take(&mut self.entries);
        self.allocate(old.len() * 2);
        for entry in old.into_iter().filter(|e| !e.is_empty()) {
            let (i, _) = self.find(entry.region);
            self.entries[i] = entry;
        }
    }

    /// Checks the table's invariants.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let mask = self.mask();
        if !self.entries.len().is_power_of_two() || self.entries.len() != 1 << self.bits {
            return Err("region index size is not its power of two");
        }
        if self.len * 4 > self.entries.len() * 3 {
            return Err("region index is over 3/4 full");
        }
        let mut occupied = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.is_empty() {
                continue;
            }
            occupied += 1;
            let mut j = self.home(entry.region);
            while j != i {
                if self.entries[j].is_empty() {
                    return Err("a region is cut off from its home by an empty entry");
                }
                if self.entries[j].region == entry.region {
                    return Err("a region is indexed twice");
                }
                j = (j + 1) & mask;
            }
        }
        if occupied != self.len {
            return Err("region index length disagrees with its entries");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::RegionIndex;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Inserts and removes of clustered and scattered ids agree with a std `HashMap`, and the
        /// table's invariants hold after every step.
        #[test]
        fn region_index_agrees_with_a_hash_map(
            ops in prop::collection::vec((any::<bool>(), 0u64..64, any::<bool>(), 0u32..1000), 0..400),
        ) {
            let mut index = RegionIndex::with_capacity(0);
            let mut model = HashMap::new();
            for (insert, id, far, slot) in ops {
                // Ids near each other, and ids that differ only in their high bits.
                let region = if far { id << 40 } else { id };
                if insert {
                    prop_assert_eq!(index.insert(region, slot, slot / 3), model.insert(region, slot));
                } else {
                    prop_assert_eq!(index.remove(region), model.remove(&region));
                }
                prop_assert_eq!(index.check(), Ok(()));
                prop_assert_eq!(index.len(), model.len());
                for (&region, &slot) in &model {
                    prop_assert_eq!(index.get_with_hint(region), Some((slot, slot / 3)));
                }
            }
        }
    }

    #[test]
    fn a_full_run_wraps_around_the_end_of_the_table() {
        let mut index = RegionIndex::with_capacity(0);
        // Find ids whose home is the last index, so their run wraps to the front.
        let last = index.entries.len() - 1;
        let wrapping: Vec<u64> = (0..).filter(|&r| index.home(r) == last).take(4).collect();
        for (slot, &region) in wrapping.iter().enumerate() {
            assert_eq!(index.insert(region, slot as u32, 0), None);
        }
        assert_eq!(index.check(), Ok(()));
        assert_eq!(index.remove(wrapping[0]), Some(0));
        assert_eq!(index.check(), Ok(()));
        for (slot, &region) in wrapping.iter().enumerate().skip(1) {
            assert_eq!(index.get(region), Some(slot as u32));
        }
    }
}
