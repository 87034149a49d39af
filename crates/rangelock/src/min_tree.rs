//! A tournament tree over a growable array of timestamped leaves: the minimum ts read in `O(1)`.
//!
//! The leaves are the range lock's slots themselves, so a slot's ts sits in the same cache line
//! as the rest of the slot. An update walks up from its leaf and stops at the first ancestor whose
//! minimum does not change, and a write that leaves the ts as it was walks nowhere: raising a ts
//! that is not the minimum of its sibling pair costs one comparison, the common case when many
//! regions advance to the same resolved ts.

use alloc::vec;
use alloc::vec::Vec;

use crate::prefetch::prefetch;

/// A leaf with a timestamp; `u64::MAX` counts as no ts (a free slot).
pub(crate) trait Timestamped {
    fn ts(&self) -> u64;
}

/// Minimum over the ts of `leaves`. Invariant: `inner[i] == min(child(2i), child(2i + 1))` for
/// every inner node `i` in `1..cap`, where a child `n >= cap` is leaf `n - cap` (`u64::MAX` past
/// the last leaf); `inner[1]` is the overall minimum; `leaves.len() <= cap`.
#[derive(Clone, Debug)]
pub(crate) struct MinTree<T> {
    inner: Vec<u64>,
    leaves: Vec<T>,
    cap: usize,
}

impl<T: Timestamped> MinTree<T> {
    /// A tree with room for `leaves` leaves before it grows.
    pub(crate) fn with_capacity(leaves: usize) -> Self {
        let cap = leaves.next_power_of_two().max(16);
        Self { inner: vec![u64::MAX; cap], leaves: Vec::with_capacity(leaves), cap }
    }

    /// Heap bytes: the leaves' vector and the inner nodes, as allocated.
    pub(crate) fn heap_bytes(&self) -> (usize, usize) {
        (
            self.leaves.capacity() * core::mem::size_of::<T>(),
            self.inner.capacity() * core::mem::size_of::<u64>(),
        )
    }

    /// The minimum over all leaves (`u64::MAX` when there is none).
    pub(crate) fn min(&self) -> u64 {
        self.inner[1]
    }

    /// All leaves, by index.
    pub(crate) fn leaves(&self) -> &[T] {
        &self.leaves
    }

    /// Leaf `i`.
    #[inline]
    pub(crate) fn leaf(&self, i: u32) -> &T {
        &self.leaves[i as usize]
    }

    /// Where leaf `i` is (for a prefetch; dangling past the end, never read).
    #[inline]
    pub(crate) fn leaf_ptr(&self, i: u32) -> *const T {
        self.leaves.as_ptr().wrapping_add(i as usize)
    }

    /// Requests the lines an update of leaf `i` reads first: the leaf and its parent.
    #[inline]
    pub(crate) fn prefetch_update(&self, i: u32) {
        prefetch(self.leaf_ptr(i));
        prefetch(self.inner.as_ptr().wrapping_add((self.cap + i as usize) / 2));
    }

    /// Leaf `i`, if it exists.
    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        self.leaves.get(i as usize)
    }

    /// Appends a leaf and returns its index.
    pub(crate) fn push(&mut self, leaf: T) -> u32 {
        if self.leaves.len() == self.cap {
            self.grow();
        }
        self.leaves.push(leaf);
        let i = self.leaves.len() - 1;
        self.propagate(i);
        u32::try_from(i).expect("fewer than 2^32 leaves")
    }

    /// Changes leaf `i` and keeps the minimum up to date.
    #[inline]
    pub(crate) fn update<R>(&mut self, i: u32, change: impl FnOnce(&mut T) -> R) -> R {
        let leaf = &mut self.leaves[i as usize];
        let before = leaf.ts();
        let result = change(leaf);
        let after = leaf.ts();
        if after > before {
            self.raised(i as usize, before, after);
        } else if after != before {
            self.propagate(i as usize);
        }
        result
    }

    /// After leaf `i`'s ts rose from `old` to `ts` (a region advancing, the common update): an
    /// ancestor's minimum can only change if it was `old`, so the walk up stops at the first one
    /// that was not, or that keeps `old` through another child; at the bottom the sibling leaf
    /// is read directly (it shares the leaf's cache line).
    #[inline]
    fn raised(&mut self, i: usize, old: u64, ts: u64) {
        let mut n = (self.cap + i) / 2;
        if self.inner[n] != old {
            return;
        }
        let sibling = self.leaves.get(i ^ 1).map_or(u64::MAX, T::ts);
        let mut min = ts.min(sibling);
        while min != old {
            self.inner[n] = min;
            if n == 1 {
                return;
            }
            n /= 2;
            if self.inner[n] != old {
                return;
            }
            min = self.inner[2 * n].min(self.inner[2 * n + 1]);
        }
    }

    fn child(&self, n: usize) -> u64 {
        if n >= self.cap {
            self.leaves.get(n - self.cap).map_or(u64::MAX, T::ts)
        } else {
            self.inner[n]
        }
    }

    fn propagate(&mut self, leaf: usize) {
        let mut n = (self.cap + leaf) / 2;
        while n >= 1 {
            let min = self.child(2 * n).min(self.child(2 * n + 1));
            if self.inner[n] == min {
                break;
            }
            self.inner[n] = min;
            n /= 2;
        }
    }

    fn grow(&mut self) {
        self.cap *= 2;
        self.inner = vec![u64::MAX; self.cap];
        for n in (1..self.cap).rev() {
            self.inner[n] = self.child(2 * n).min(self.child(2 * n + 1));
        }
    }

    /// Calls `visit` with the index of every leaf whose ts is below `below`, in index order,
    /// until it returns false. Only subtrees whose minimum is below `below` are entered:
    /// `O(k log n)` for `k` leaves visited, whatever the number of leaves.
    pub(crate) fn for_each_below(&self, below: u64, mut visit: impl FnMut(u32) -> bool) {
        if self.min() >= below {
            return;
        }
        // Depth-first, left to right, with an explicit stack (at most one entry per level, plus
        // the right siblings waiting: bounded by 2 * depth).
        let mut stack: Vec<usize> = vec![1];
        while let Some(n) = stack.pop() {
            if n >= self.cap {
                if !visit(u32::try_from(n - self.cap).expect("fewer than 2^32 leaves")) {
                    return;
                }
                continue;
            }
            for child in [2 * n + 1, 2 * n] {
                if self.child(child) < below {
                    stack.push(child);
                }
            }
        }
    }

    /// The leaf with the lowest ts among those `wanted` accepts (the lowest index on ties is not
    /// promised), searching smaller minima first and skipping every subtree whose minimum is not
    /// below the best found so far: `O(log n)` when the overall minimum is wanted, plus
    /// `O(log n)` per unwanted leaf below the answer.
    pub(crate) fn min_leaf_where(&self, mut wanted: impl FnMut(&T) -> bool) -> Option<u32> {
        let mut best: Option<(u64, usize)> = None;
        let mut stack: Vec<usize> = vec![1];
        while let Some(n) = stack.pop() {
            if best.is_some_and(|(ts, _)| self.child(n) >= ts) {
                continue;
            }
            if n >= self.cap {
                let i = n - self.cap;
                if let Some(leaf) = self.leaves.get(i)
                    && wanted(leaf)
                {
                    best = Some((leaf.ts(), i));
                }
                continue;
            }
            let (left, right) = (2 * n, 2 * n + 1);
            let (first, second) =
                if self.child(left) <= self.child(right) { (left, right) } else { (right, left) };
            stack.push(second);
            stack.push(first);
        }
        best.map(|(_, i)| u32::try_from(i).expect("fewer than 2^32 leaves"))
    }

    /// Checks the tree invariant.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.leaves.len() > self.cap {
            return Err("min tree has more leaves than room");
        }
        for n in 1..self.cap {
            if self.inner[n] != self.child(2 * n).min(self.child(2 * n + 1)) {
                return Err("min tree node is not the minimum of its children");
            }
        }
        Ok(())
    }
}
