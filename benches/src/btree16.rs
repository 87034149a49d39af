//! A B-tree as the Go range lock's ordered maps are (`github.com/google/btree`, degree 16): at
//! most 31 items per node and 32 children, at least 15 items in every node but the root, nodes
//! split on the way down before an insert and refilled (stolen into or merged) on the way down
//! before a removal, items found by binary search. Only what the model of the Go lock needs.
//!
//! Items are ordered by [`Keyed::key`], compared as bytes, as the Go lock's `less` functions do.

/// The degree: nodes hold `DEGREE - 1 ..= 2 * DEGREE - 1` items (the root fewer).
const DEGREE: usize = 16;
const MAX_ITEMS: usize = 2 * DEGREE - 1;
const MIN_ITEMS: usize = DEGREE - 1;

/// An item ordered by a byte key.
pub trait Keyed {
    /// The key the item is ordered by.
    fn key(&self) -> &[u8];
}

/// The B-tree. Invariant: every node's items are sorted and its `children` (none for a leaf,
/// else one more than its items) hold the keys between them.
pub struct BTree<T> {
    root: Option<Box<Node<T>>>,
    len: usize,
}

// Children are pointers, as in Go (`[]*node`): moving one between nodes moves a pointer.
#[allow(clippy::vec_box)]
struct Node<T> {
    items: Vec<T>,
    children: Vec<Box<Node<T>>>,
}

impl<T> Default for BTree<T> {
    fn default() -> Self {
        Self { root: None, len: 0 }
    }
}

impl<T: Keyed> Node<T> {
    fn leaf() -> Self {
        Self { items: Vec::with_capacity(MAX_ITEMS), children: Vec::new() }
    }

    /// The first index whose key is above `key`, and whether the one before it is `key`.
    fn find(&self, key: &[u8]) -> (usize, bool) {
        let i = self.items.partition_point(|item| item.key() <= key);
        if i > 0 && self.items[i - 1].key() == key { (i - 1, true) } else { (i, false) }
    }

    /// Splits off the items after `at` into a new node; returns the item at `at` and the node.
    fn split(&mut self, at: usize) -> (T, Box<Self>) {
        let mut right = Self::leaf();
        right.items.extend(self.items.drain(at + 1..));
        let middle = self.items.pop().expect("a middle item");
        if !self.children.is_empty() {
            right.children.extend(self.children.drain(at + 1..));
        }
        (middle, Box::new(right))
    }

    /// Splits child `i` if it is full; returns whether it did.
    fn maybe_split_child(&mut self, i: usize) -> bool {
        if self.children[i].items.len() < MAX_ITEMS {
            return false;
        }
        let (middle, right) = self.children[i].split(MAX_ITEMS / 2);
        self.items.insert(i, middle);
        self.children.insert(i + 1, right);
        true
    }

    fn insert(&mut self, item: T) -> Option<T> {
        let (mut i, found) = self.find(item.key());
        if found {
            return Some(core::mem::replace(&mut self.items[i], item));
        }
        if self.children.is_empty() {
            self.items.insert(i, item);
            return None;
        }
        if self.maybe_split_child(i) {
            let promoted = self.items[i].key();
            if item.key() == promoted {
                return Some(core::mem::replace(&mut self.items[i], item));
            }
            if item.key() > promoted {
                i += 1;
            }
        }
        self.children[i].insert(item)
    }

    /// Removes `key` (or, with `None`, the largest item) from this subtree.
    fn remove(&mut self, key: Option<&[u8]>) -> Option<T> {
        let (i, found) = match key {
            Some(key) => self.find(key),
            None if self.children.is_empty() => return self.items.pop(),
            None => (self.items.len(), false),
        };
        if self.children.is_empty() {
            return found.then(|| self.items.remove(i));
        }
        if self.children[i].items.len() <= MIN_ITEMS {
            self.grow_child(i);
            return self.remove(key);
        }
        if found {
            // The predecessor, the largest item of the left child, takes its place.
            let predecessor = self.children[i].remove(None).expect("a non-empty child");
            return Some(core::mem::replace(&mut self.items[i], predecessor));
        }
        self.children[i].remove(key)
    }

    /// Gives child `i` more than the minimum: from a sibling that can spare one, or by merging
    /// it with one.
    fn grow_child(&mut self, mut i: usize) {
        if i > 0 && self.children[i - 1].items.len() > MIN_ITEMS {
            let stolen = self.children[i - 1].items.pop().expect("spare item");
            let separator = core::mem::replace(&mut self.items[i - 1], stolen);
            self.children[i].items.insert(0, separator);
            if let Some(grandchild) = self.children[i - 1].children.pop() {
                self.children[i].children.insert(0, grandchild);
            }
        } else if i < self.items.len() && self.children[i + 1].items.len() > MIN_ITEMS {
            let stolen = self.children[i + 1].items.remove(0);
            let separator = core::mem::replace(&mut self.items[i], stolen);
            self.children[i].items.push(separator);
            if !self.children[i + 1].children.is_empty() {
                let grandchild = self.children[i + 1].children.remove(0);
                self.children[i].children.push(grandchild);
            }
        } else {
            if i >= self.items.len() {
                i -= 1;
            }
            let separator = self.items.remove(i);
            let right = self.children.remove(i + 1);
            let child = &mut self.children[i];
            child.items.push(separator);
            let Node { items, children } = *right;
            child.items.extend(items);
            child.children.extend(children);
        }
    }

    /// Calls `visit` on the items with keys in `[from, to)` (`to` `None`: no end) in order,
    /// until it returns false; returns false once it did.
    fn ascend(&self, from: &[u8], to: Option<&[u8]>, visit: &mut impl FnMut(&T) -> bool) -> bool {
        let start = self.items.partition_point(|item| item.key() < from);
        for i in start..=self.items.len() {
            if let Some(child) = self.children.get(i)
                && !child.ascend(from, to, visit)
            {
                return false;
            }
            let Some(item) = self.items.get(i) else { break };
            if to.is_some_and(|to| item.key() >= to) || !visit(item) {
                return false;
            }
        }
        true
    }

    /// The item with the largest key at or below `key`.
    fn last_at_or_below(&self, key: &[u8]) -> Option<&T> {
        let i = self.items.partition_point(|item| item.key() <= key);
        let below = self.children.get(i).and_then(|child| child.last_at_or_below(key));
        below.or_else(|| i.checked_sub(1).map(|i| &self.items[i]))
    }
}

impl<T: Keyed> BTree<T> {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `item`, replacing (and returning) an item of the same key.
    pub fn replace_or_insert(&mut self, item: T) -> Option<T> {
        let root = self.root.get_or_insert_with(|| Box::new(Node::leaf()));
        if root.items.len() >= MAX_ITEMS {
            let (middle, right) = root.split(MAX_ITEMS / 2);
            let left = core::mem::replace(root, Box::new(Node::leaf()));
            root.items.push(middle);
            root.children.push(left);
            root.children.push(right);
        }
        let replaced = root.insert(item);
        self.len += usize::from(replaced.is_none());
        replaced
    }

    /// Removes the item of `key`.
    pub fn delete(&mut self, key: &[u8]) -> Option<T> {
        let root = self.root.as_mut()?;
        let removed = root.remove(Some(key));
        if root.items.is_empty() && !root.children.is_empty() {
            self.root = root.children.pop();
        }
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// The item of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&T> {
        let mut node = self.root.as_deref()?;
        loop {
            let (i, found) = node.find(key);
            if found {
                return Some(&node.items[i]);
            }
            node = node.children.get(i)?;
        }
    }

    /// The item with the largest key at or below `key` (Go's `DescendLessOrEqual`, stopped
    /// after the first item).
    pub fn last_at_or_below(&self, key: &[u8]) -> Option<&T> {
        self.root.as_deref()?.last_at_or_below(key)
    }

    /// Calls `visit` on the items with keys in `[from, to)` in order until it returns false
    /// (Go's `AscendRange`; `to` `None` is `AscendGreaterOrEqual`).
    pub fn ascend_range(&self, from: &[u8], to: Option<&[u8]>, mut visit: impl FnMut(&T) -> bool) {
        if let Some(root) = &self.root {
            root.ascend(from, to, &mut visit);
        }
    }

    /// Calls `visit` on every item in order (Go's `Ascend`).
    pub fn ascend(&self, visit: impl FnMut(&T) -> bool) {
        self.ascend_range(&[], None, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(Vec<u8>, u64);

    impl Keyed for Item {
        fn key(&self) -> &[u8] {
            &self.0
        }
    }

    /// Against std's `BTreeMap`: seeded random inserts, removals and queries.
    #[test]
    fn matches_a_btreemap() {
        let mut tree = BTree::default();
        let mut model = BTreeMap::new();
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            state >> 33
        };
        for step in 0..40_000u64 {
            let key = (next() % 3000).to_be_bytes().to_vec();
            match next() % 4 {
                0 | 1 => {
                    let old = tree.replace_or_insert(Item(key.clone(), step)).map(|i| i.1);
                    assert_eq!(old, model.insert(key, step));
                }
                2 => assert_eq!(tree.delete(&key).map(|i| i.1), model.remove(&key)),
                _ => {
                    assert_eq!(tree.get(&key).map(|i| i.1), model.get(&key).copied());
                    let below = model.range(..=key.clone()).next_back().map(|(_, v)| *v);
                    assert_eq!(tree.last_at_or_below(&key).map(|i| i.1), below);
                    let to = (u64::from_be_bytes(key[..8].try_into().unwrap()) + 40).to_be_bytes();
                    let mut got = Vec::new();
                    tree.ascend_range(&key, Some(&to), |i| {
                        got.push(i.1);
                        true
                    });
                    let want: Vec<u64> =
                        model.range(key.clone()..to.to_vec()).map(|(_, v)| *v).collect();
                    assert_eq!(got, want);
                }
            }
            assert_eq!(tree.len(), model.len());
        }
        let mut all = Vec::new();
        tree.ascend(|i| {
            all.push(i.0.clone());
            true
        });
        assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
    }
}
