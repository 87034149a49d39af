//! A tournament tree: the minimum of a growable array of timestamps, read in `O(1)`.
//!
//! Leaves are slots of the range lock's slab; a free slot holds `u64::MAX`. An update walks up
//! from its leaf and stops at the first ancestor whose minimum does not change, so raising a ts
//! that is not the minimum of its sibling pair costs one comparison: the common case when many
//! regions advance to the same resolved ts.

use alloc::vec;
use alloc::vec::Vec;

/// Minimum of `len` slots. Invariant: `nodes[i] == min(nodes[2i], nodes[2i + 1])` for every inner
/// node `i` in `1..cap`; leaves are `nodes[cap..2 * cap]`; `nodes[1]` is the overall minimum.
#[derive(Clone, Debug)]
pub(crate) struct MinTree {
    nodes: Vec<u64>,
    cap: usize,
}

impl MinTree {
    /// A tree with room for `slots` slots before it grows.
    pub(crate) fn with_capacity(slots: usize) -> Self {
        let cap = slots.next_power_of_two().max(16);
        Self { nodes: vec![u64::MAX; 2 * cap], cap }
    }

    /// The minimum over all slots (`u64::MAX` when every slot is free).
    pub(crate) fn min(&self) -> u64 {
        self.nodes[1]
    }

    /// The ts of `slot`.
    pub(crate) fn get(&self, slot: u32) -> u64 {
        self.nodes.get(self.cap + slot as usize).copied().unwrap_or(u64::MAX)
    }

    /// Sets the ts of `slot`, growing the tree when needed.
    pub(crate) fn set(&mut self, slot: u32, ts: u64) {
        let slot = slot as usize;
        if slot >= self.cap {
            self.grow(slot + 1);
        }
        let mut i = self.cap + slot;
        self.nodes[i] = ts;
        while i > 1 {
            i /= 2;
            let min = self.nodes[2 * i].min(self.nodes[2 * i + 1]);
            if self.nodes[i] == min {
                break;
            }
            self.nodes[i] = min;
        }
    }

    fn grow(&mut self, need: usize) {
        let cap = need.next_power_of_two().max(2 * self.cap);
        let mut nodes = vec![u64::MAX; 2 * cap];
        nodes[cap..cap + self.cap].copy_from_slice(&self.nodes[self.cap..]);
        for i in (1..cap).rev() {
            nodes[i] = nodes[2 * i].min(nodes[2 * i + 1]);
        }
        self.nodes = nodes;
        self.cap = cap;
    }

    /// Checks the tree invariant.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        for i in 1..self.cap {
            if self.nodes[i] != self.nodes[2 * i].min(self.nodes[2 * i + 1]) {
                return Err("min tree node is not the minimum of its children");
            }
        }
        Ok(())
    }
}
