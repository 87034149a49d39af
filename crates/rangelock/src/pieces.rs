//! The pieces of a range lock's span: an ordered map from piece start to slot, laid out for a
//! million pieces under random access.
//!
//! At that size a lookup costs what its chain of dependent cache and TLB misses costs (a random
//! load ranging over 16 MB takes about 50 ns on the benchmark machine, over 256 MB about 230
//! ns), and a generic ordered map of 32-byte keys (`BTreeMap`) makes a long chain: seven levels
//! of half-full nodes at a million keys, each scanned key by key. [`Pieces`] is a B+tree whose
//! nodes are searched without touching their keys:
//!
//! - Every node (a leaf of pieces or an inner node of child fences) holds up to [`NODE_CAP`]
//!   sorted keys and, beside each, a *tag*: the 11 bytes of the key right after the prefix that
//!   every key the node is searched for shares, and how many bytes follow. Tags order like the
//!   keys; when at most 11 bytes follow the prefix (the usual case: keys in one node differ in
//!   their last bytes) an equal tag is an equal key, and whole keys are compared only where
//!   longer suffixes tie. A tag and its value share one `u128` entry, so a search scans one
//!   small array of integers and finds the value there.
//! - A node's keys live in a box of their own: the searched part of all the nodes (576 bytes
//!   each) stays dense, a third of the memory the keys take.
//! - The nodes of each level form a list in key order, and each level is routed by the level
//!   above: its keys are the fences (lowest keys) of the nodes below. The top level is one node.
//!
//! Ascending inserts (a subscription locked region by region) fill nodes completely: a key added
//! after the last key of a full node starts a new node rather than splitting it. Removals merge a
//! node into its predecessor when both fit in half a node together, and an emptied node goes away.
//!
//! The map is a partition of the span (as `fuzzing::partition::Partition`, the model the differential
//! tests compare it with): a piece starts at each key and runs to the next key, the last to the
//! span's end; the span's start is always a key.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cmp::Ordering;

use kvfeed_span::{EncodedKey, Span, below_end};

use crate::prefetch::prefetch;

/// Keys per node.
pub(crate) const NODE_CAP: usize = 32;
/// No node (the end of a level's list).
const NO_NODE: u32 = u32::MAX;

/// A position among the pieces: leaf id and index in the leaf.
type Pos = (u32, usize);

/// Where a key falls among the pieces: the leaf it is routed to, how many keys of that leaf are
/// at or below it, and whether it is one of them. Valid until the next change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    leaf: u32,
    rank: usize,
    exact: bool,
}

/// The pieces a range overlaps (see [`Pieces::cover`]). Valid until the next change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cover {
    /// The piece containing the range's start.
    pub(crate) first: Pos,
    /// The piece containing the range's last key.
    pub(crate) last: Pos,
    /// Whether a piece starts at the range's start.
    pub(crate) start_is_boundary: bool,
    /// Where the range's end goes when it is not a piece boundary (nor the span's end).
    pub(crate) end_at: Option<Located>,
}

/// One piece, borrowed: its bounds and its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    /// The first key of the piece.
    pub(crate) start: &'a EncodedKey,
    /// The end of the piece (exclusive; empty for plus infinity).
    pub(crate) end: &'a EncodedKey,
    /// The piece's slot.
    pub(crate) slot: u32,
}

impl Piece<'_> {
    /// The piece's keys as a span.
    pub(crate) fn span(&self) -> Span {
        Span::new(self.start.clone(), self.end.clone()).expect("pieces are never empty")
    }
}

/// One node: sorted keys with their tags and values (slots in a leaf, node ids of the level below
/// in an inner node).
///
/// Invariants (checked by [`Pieces::check_invariants`]): `keys[..len]` are strictly ascending and
/// lie in `[fence, next node's fence)`; `prefix` is the common prefix of the node's *search
/// bounds*, which every key a search compares by tag shares: from the fence (or, in a level's
/// first node, `keys[1]`: the first key is the span's start, often the empty key, and is settled
/// by a comparison) to the next node's fence (or the span's end; or, when that is unbounded,
/// the last key, above which a comparison settles a search); `entries[i]` holds
/// `tag(keys[i], prefix)`;
/// `keys[len..]` are empty keys (so long keys are not kept alive); a node in a level's list is
/// never empty.
///
/// Layout (`repr(C)`, cache-line aligned, 576 bytes): the header, the fence and the pointer to
/// the keys fill the first line, the entries the next eight. Each entry packs a key's tag (high
/// 96 bits) with its value (low 32 bits), so a search loads nine lines whose addresses are known
/// up front, and finds the value among them. The keys live apart, read only on ties, prefix
/// changes and walks: the nodes of a level stay dense, which keeps a million pieces' search
/// structure in far fewer pages (a random access's cost grows with the memory it ranges over).
#[derive(Clone)]
#[repr(C, align(64))]
struct Node {
    prefix: usize,
    len: u32,
    prev: u32,
    next: u32,
    /// The first key is below the search bounds (this is a level's first node).
    skip_first: bool,
    /// The last key is the top of the search bounds (a level's last node, span unbounded above).
    open_end: bool,
    fence: EncodedKey,
    keys: Box<[EncodedKey; NODE_CAP]>,
    entries: [u128; NODE_CAP],
}

/// Bytes of a key a tag holds: 11, then the count, in the high 96 bits of an entry.
const TAG_BYTES: usize = 11;
/// The bits of an entry below its tag: the value.
const VALUE_BITS: u32 = 32;
/// The bits of a tag holding key bytes (the top [`TAG_BYTES`] bytes).
const TAG_WINDOW: u128 = !0 << (128 - 8 * TAG_BYTES);

/// The tag of `key` in a node whose search bounds share `prefix` bytes, in the high 96 bits of a
/// `u128` (the low 32 bits, an entry's value, are zero): the 11 bytes after the prefix,
/// zero-padded, then the number of bytes after the prefix capped at 12.
///
/// For two keys sharing their first `prefix` bytes, `a < b` implies `tag(a) <= tag(b)`: where
/// the windows differ they order the keys; where they are equal and one key ends inside the
/// window, that key is a prefix of the other and has the smaller count. So different tags order
/// the keys, and equal tags with a count of at most 11 ([`is_exact`]) mean equal keys. And as
/// the value bits of a tag are zero, `entry < tag` compares the entry's tag alone.
#[inline]
fn tag(key: &[u8], prefix: usize) -> u128 {
    let rest = key.len().saturating_sub(prefix);
    // The bytes after the prefix at the top of a `u128`, loaded as one 16-byte word where the
    // key allows (a byte-wise copy into a buffer then read whole stalls store forwarding).
    let window = if rest == 0 {
        0
    } else if let Some(bytes) = key.get(prefix..prefix + 16) {
        u128::from_be_bytes(bytes.try_into().expect("16 bytes"))
    } else if let Some(last) = key.len().checked_sub(16) {
        // The key's last 16 bytes end with the `rest` ones: shift those to the top.
        u128::from_be_bytes(key[last..].try_into().expect("16 bytes")) << ((16 - rest) * 8)
    } else {
        let mut buf = [0u8; 16];
        buf[..rest].copy_from_slice(&key[prefix..]);
        u128::from_be_bytes(buf)
    };
    // At most 12: fits the byte below the window.
    let count = rest.min(TAG_BYTES + 1) as u128;
    window & TAG_WINDOW | count << VALUE_BITS
}

/// Whether keys with this tag are told apart by the tag alone (at most 11 bytes follow the
/// prefix).
#[inline]
fn is_exact(tag: u128) -> bool {
    (tag >> VALUE_BITS) & 0xff <= TAG_BYTES as u128
}

/// The tag of an entry (value bits cleared).
#[inline]
fn tag_of(entry: u128) -> u128 {
    entry >> VALUE_BITS << VALUE_BITS
}

/// The length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Node {
    fn new(fence: EncodedKey) -> Self {
        Self {
            prefix: 0,
            len: 0,
            prev: NO_NODE,
            next: NO_NODE,
            skip_first: false,
            open_end: false,
            fence,
            keys: Box::new(core::array::from_fn(|_| EncodedKey::default())),
            entries: [0; NODE_CAP],
        }
    }

    fn len(&self) -> usize {
        self.len as usize
    }

    /// How many keys are at or below `key`, and whether `key` is one of them. `key` must lie
    /// between the node's fence and the next node's, both included.
    ///
    /// The smaller tags are counted in one pass without branching rather than by binary search:
    /// every line of the node is requested at once (one miss's wait for a node out of cache,
    /// where a binary search waits for each probe in turn).
    #[inline]
    fn rank(&self, key: &EncodedKey) -> (usize, bool) {
        // Out of cache, the header's miss and the entries' would follow each other unless
        // requested together.
        for line in self.entries.chunks(4) {
            prefetch(line.as_ptr());
        }
        let len = self.len();
        let mut from = 0;
        if self.skip_first {
            if len == 1 || *key < self.keys[1] {
                return (1, *key == self.keys[0]);
            }
            from = 1;
        }
        if self.open_end && *key > self.keys[len - 1] {
            return (len, false);
        }
        let t = tag(key.as_bytes(), self.prefix);
        // Tags are sorted: count the smaller ones without branching, then settle ties.
        // On the high halves first (one 64-bit comparison each); entries whose high half
        // equals the tag's are contiguous and few, and settled on the whole entry.
        let high = (t >> 64) as u64;
        let entries = &self.entries[from..len];
        let mut i =
            from + entries.iter().map(|&x| usize::from(((x >> 64) as u64) < high)).sum::<usize>();
        while i < len && (self.entries[i] >> 64) as u64 == high && self.entries[i] < t {
            i += 1;
        }
        if is_exact(t) {
            let exact = i < len && tag_of(self.entries[i]) == t;
            return (i + usize::from(exact), exact);
        }
        while i < len && tag_of(self.entries[i]) == t {
            match self.keys[i].cmp(key) {
                Ordering::Less => i += 1,
                Ordering::Equal => return (i + 1, true),
                Ordering::Greater => break,
            }
        }
        (i, false)
    }

    /// Whether `key` shares the prefix of the search bounds, so that its tag compares with the
    /// entries' (the first key of a level's first node excepted).
    #[inline]
    fn shares_prefix(&self, key: &EncodedKey) -> bool {
        let lo = if self.skip_first && self.len() > 1 { &self.keys[1] } else { &self.fence };
        key.as_bytes().get(..self.prefix) == lo.as_bytes().get(..self.prefix)
    }

    /// Whether key `i` is `key`: by tag when that tells (no key read), else by comparison.
    #[inline]
    fn key_equals(&self, i: usize, key: &EncodedKey) -> bool {
        if !(self.skip_first && i == 0) && self.shares_prefix(key) {
            let t = tag(key.as_bytes(), self.prefix);
            if is_exact(t) {
                return tag_of(self.entries[i]) == t;
            }
        }
        self.keys[i] == *key
    }

    /// The value of entry `i`.
    #[inline]
    fn val(&self, i: usize) -> u32 {
        self.entries[i] as u32
    }

    /// Replaces the value of entry `i`, returning the old one.
    fn replace_val(&mut self, i: usize, val: u32) -> u32 {
        let old = self.val(i);
        self.entries[i] = tag_of(self.entries[i]) | u128::from(val);
        old
    }

    /// Recomputes the tags for a new prefix.
    fn set_prefix(&mut self, prefix: usize) {
        self.prefix = prefix;
        for i in 0..self.len() {
            self.entries[i] = tag(self.keys[i].as_bytes(), prefix) | u128::from(self.val(i));
        }
    }

    fn insert_at(&mut self, i: usize, key: EncodedKey, val: u32) {
        let len = self.len();
        debug_assert!(len < NODE_CAP && i <= len);
        self.entries.copy_within(i..len, i + 1);
        self.keys[i..=len].rotate_right(1);
        self.entries[i] = tag(key.as_bytes(), self.prefix) | u128::from(val);
        self.keys[i] = key;
        self.len += 1;
    }

    fn remove_at(&mut self, i: usize) -> u32 {
        let len = self.len();
        let val = self.val(i);
        self.entries.copy_within(i + 1..len, i);
        self.keys[i..len].rotate_left(1);
        self.len -= 1;
        self.keys[len - 1] = EncodedKey::default();
        val
    }
}

/// The nodes of one level, by id; ids on `free` are unused. Node 0 is always the level's first
/// node (nodes merge into their predecessor, so the first one never goes).
#[derive(Clone)]
struct Level {
    nodes: Vec<Node>,
    free: Vec<u32>,
}

impl Level {
    fn one(node: Node) -> Self {
        Self { nodes: alloc::vec![node], free: Vec::new() }
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
            }
        }
    }
}

/// The partition of a span into pieces, each keyed by its start, with a slot per piece.
#[derive(Clone)]
pub(crate) struct Pieces {
    span: Span,
    /// `levels[0]` holds the pieces; each level above routes to the one below; the top level is
    /// one node, the root.
    levels: Vec<Level>,
    len: usize,
}

/// The heap bytes of a piece index, by part (see [`Pieces::heap_bytes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PiecesBytes {
    /// The nodes of the bottom level (tags, values, headers), as allocated.
    pub(crate) leaves: usize,
    /// The nodes of the levels above.
    pub(crate) inner: usize,
    /// The boxes of keys, one per node (a key of up to `EncodedKey::INLINE` bytes inside).
    pub(crate) key_boxes: usize,
    /// The bytes of longer keys (and fences), stored apart.
    pub(crate) key_bytes: usize,
}

impl Pieces {
    /// Where the index's heap bytes are: `O(nodes)`.
    pub(crate) fn heap_bytes(&self) -> PiecesBytes {
        let mut bytes = PiecesBytes::default();
        for (level, nodes) in self.levels.iter().enumerate() {
            let allocated = nodes.nodes.capacity() * core::mem::size_of::<Node>()
                + nodes.free.capacity() * core::mem::size_of::<u32>();
            if level == 0 {
                bytes.leaves += allocated;
            } else {
                bytes.inner += allocated;
            }
            // Keys up to `EncodedKey::INLINE` bytes live in their handles; longer ones apart.
            let apart = |key: &EncodedKey| {
                let len = key.as_bytes().len();
                if len > EncodedKey::INLINE { len } else { 0 }
            };
            for node in &nodes.nodes {
                bytes.key_boxes += core::mem::size_of::<[EncodedKey; NODE_CAP]>();
                bytes.key_bytes += apart(&node.fence) + node.keys.iter().map(apart).sum::<usize>();
            }
        }
        bytes.inner += self.levels.capacity() * core::mem::size_of::<Level>();
        bytes
    }

    /// One piece covering `span`, holding `slot`.
    pub(crate) fn new(span: Span, slot: u32) -> Self {
        let root = Self::root_node(&span, slot);
        let mut pieces = Self { span, levels: alloc::vec![Level::one(root)], len: 1 };
        pieces.refresh_prefix(0, 0);
        pieces
    }

    /// A first node of a level: fenced at the span's start, holding it with `val`. Its prefix
    /// is set by [`Pieces::refresh_prefix`] once it is in place.
    fn root_node(span: &Span, val: u32) -> Node {
        let mut node = Node::new(span.start().clone());
        node.insert_at(0, span.start().clone(), val);
        node
    }

    /// The partitioned span.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    fn node(&self, level: usize, id: u32) -> &Node {
        &self.levels[level].nodes[id as usize]
    }

    fn node_mut(&mut self, level: usize, id: u32) -> &mut Node {
        &mut self.levels[level].nodes[id as usize]
    }

    /// The upper bound of a node's keys: the next node's fence or the span's end.
    fn upper(&self, level: usize, id: u32) -> &EncodedKey {
        match self.node(level, id).next {
            NO_NODE => self.span.end(),
            next => &self.node(level, next).fence,
        }
    }

    /// A node's search bounds (see [`Node`]): whether to skip its first key, whether its last
    /// key tops them, and their common prefix.
    fn search_bounds(&self, level: usize, id: u32) -> (bool, bool, usize) {
        let node = self.node(level, id);
        let len = node.len();
        let skip_first = node.prev == NO_NODE;
        let open_end = node.next == NO_NODE && self.span.is_end_unbounded();
        let lo = if skip_first && len > 1 { &node.keys[1] } else { &node.fence };
        let hi = match open_end {
            true => &node.keys[len.saturating_sub(1)],
            false => self.upper(level, id),
        };
        (skip_first, open_end, common_prefix(lo.as_bytes(), hi.as_bytes()))
    }

    /// Brings a node's search bounds up to date after its keys or links changed, recomputing the
    /// tags when the prefix moved.
    fn refresh_prefix(&mut self, level: usize, id: u32) {
        let (skip_first, open_end, prefix) = self.search_bounds(level, id);
        let node = self.node_mut(level, id);
        (node.skip_first, node.open_end) = (skip_first, open_end);
        if prefix != node.prefix {
            node.set_prefix(prefix);
        }
    }

    /// [`Pieces::refresh_prefix`] after keys were added to or removed from a node whose links are
    /// unchanged: only the search bounds of a level's first node and of an open-ended last node
    /// depend on their keys; any other node's are its fence and the next one's.
    fn refresh_after_key_change(&mut self, level: usize, id: u32) {
        let node = self.node(level, id);
        if node.skip_first || node.open_end {
            self.refresh_prefix(level, id);
        }
    }

    /// The node of `level` a key in the span (or the span's end) belongs to: a descent from the
    /// root.
    #[inline]
    fn descend(&self, key: &EncodedKey, level: usize) -> u32 {
        let mut id = 0;
        for l in (level + 1..self.levels.len()).rev() {
            let node = self.node(l, id);
            let (rank, _) = node.rank(key);
            id = match rank {
                // Below the node's first key (its first child merged into a node routed from
                // the previous parent): the key belongs to that child's predecessor.
                0 => self.node(l - 1, node.val(0)).prev,
                _ => node.val(rank - 1),
            };
        }
        id
    }

    /// Requests the lines of leaf `leaf` (its header with the fence, and its entries) ahead of
    /// a search that will start there, so that their misses overlap the caller's others.
    #[inline]
    pub(crate) fn prefetch_leaf(&self, leaf: u32) {
        if let Some(node) = self.levels[0].nodes.get(leaf as usize) {
            prefetch(core::ptr::from_ref(node));
            for line in node.entries.chunks(4) {
                prefetch(line.as_ptr());
            }
        }
    }

    fn key_at(&self, (leaf, i): Pos) -> &EncodedKey {
        &self.node(0, leaf).keys[i]
    }

    fn slot_at(&self, (leaf, i): Pos) -> u32 {
        self.node(0, leaf).val(i)
    }

    fn next_pos(&self, (leaf, i): Pos) -> Option<Pos> {
        let node = self.node(0, leaf);
        if i + 1 < node.len() {
            return Some((leaf, i + 1));
        }
        match node.next {
            NO_NODE => None,
            next => Some((next, 0)),
        }
    }

    fn prev_pos(&self, (leaf, i): Pos) -> Option<Pos> {
        if i > 0 {
            return Some((leaf, i - 1));
        }
        match self.node(0, leaf).prev {
            NO_NODE => None,
            prev => Some((prev, self.node(0, prev).len() - 1)),
        }
    }

    /// The end of the piece at `pos`: the next start, or the span's end.
    pub(crate) fn end_at(&self, pos: Pos) -> &EncodedKey {
        self.next_pos(pos).map_or(self.span.end(), |next| self.key_at(next))
    }

    fn locate_in(&self, leaf: u32, key: &EncodedKey) -> Located {
        let (rank, exact) = self.node(0, leaf).rank(key);
        Located { leaf, rank, exact }
    }

    fn locate(&self, key: &EncodedKey) -> Located {
        self.locate_in(self.descend(key, 0), key)
    }

    /// [`Pieces::locate`] starting from a leaf that may hold the key (a *finger*: the leaf of a
    /// recent lookup). The finger is taken when the key provably lies between its fence and its
    /// last key, which its header and tags tell without reading a key; otherwise, or when the
    /// finger is no leaf at all, a descent from the root. Any `u32` is a safe finger.
    fn locate_near(&self, key: &EncodedKey, finger: u32) -> Located {
        if let Some(node) = self.levels[0].nodes.get(finger as usize)
            && node.len() > 0
            && !node.skip_first
            && !node.open_end
            && *key >= node.fence
            && node.shares_prefix(key)
        {
            let t = tag(key.as_bytes(), node.prefix);
            let last = tag_of(node.entries[node.len() - 1]);
            // Below the last key, or equal to it: inside the leaf.
            if t < last || (t == last && is_exact(t)) {
                return self.locate_in(finger, key);
            }
        }
        self.locate(key)
    }

    /// The position of the greatest start at or below a located key.
    fn floor_of(&self, at: Located) -> Option<Pos> {
        if at.rank > 0 { Some((at.leaf, at.rank - 1)) } else { self.prev_pos((at.leaf, 0)) }
    }

    /// The position of the greatest start at or below `key` (`None` below the span).
    fn floor(&self, key: &EncodedKey) -> Option<Pos> {
        if key < self.span.start() {
            return None;
        }
        self.floor_of(self.locate(key))
    }

    /// The piece starting exactly at `start`, if any, and whether it ends exactly at `end`. One
    /// descent (none from a good `finger`, see [`Pieces::locate_near`]); the end is compared by
    /// tag when it lies in the same leaf.
    pub(crate) fn find_starting_at(
        &self,
        start: &EncodedKey,
        end: &EncodedKey,
        finger: u32,
    ) -> Option<(Pos, bool)> {
        // A search needs a key inside the span (an unlock may pass anything).
        if start < self.span.start() || !below_end(start.as_bytes(), self.span.end().as_bytes()) {
            return None;
        }
        let at = self.locate_near(start, finger);
        if !at.exact {
            return None;
        }
        let leaf = self.node(0, at.leaf);
        let ends_there = if at.rank < leaf.len() {
            leaf.key_equals(at.rank, end)
        } else {
            match leaf.next {
                NO_NODE => end == self.span.end(),
                next => self.node(0, next).keys[0] == *end,
            }
        };
        Some(((at.leaf, at.rank - 1), ends_there))
    }

    /// The position of the last piece.
    fn last_pos(&self) -> Pos {
        let mut id = 0;
        for l in (1..self.levels.len()).rev() {
            let node = self.node(l, id);
            id = node.val(node.len() - 1);
        }
        (id, self.node(0, id).len() - 1)
    }

    /// The pieces a sub-span of the span overlaps, found from tags alone in the usual case: one
    /// descent for the end (none from a good `finger`), and none more for the start when it lies
    /// in the same leaf.
    pub(crate) fn cover(&self, range: &Span, finger: u32) -> Cover {
        debug_assert!(range.is_sub_span(&self.span));
        let inside = "a sub-span lies above the span's start";
        let (last, end_at, end_leaf) = if range.is_end_unbounded() || range.end() == self.span.end()
        {
            let last = self.last_pos();
            (last, None, last.0)
        } else {
            let at = self.locate_near(range.end(), finger);
            let floor = self.floor_of(at).expect(inside);
            match at.exact {
                true => (self.prev_pos(floor).expect(inside), None, at.leaf),
                false => (floor, Some(at), at.leaf),
            }
        };
        // The start is at or below the end: in the end's leaf if not below its fence.
        let start = range.start();
        let leaf = match *start >= self.node(0, end_leaf).fence {
            true => end_leaf,
            false => self.descend(start, 0),
        };
        let at = self.locate_in(leaf, start);
        Cover { first: self.floor_of(at).expect(inside), last, start_is_boundary: at.exact, end_at }
    }

    /// The slots of the pieces of a cover, in key order.
    pub(crate) fn cover_slots(&self, cover: &Cover) -> impl Iterator<Item = u32> + '_ {
        let mut pos = Some(cover.first);
        let last = cover.last;
        core::iter::from_fn(move || {
            let at = pos?;
            pos = if at == last { None } else { self.next_pos(at) };
            Some(self.slot_at(at))
        })
    }

    /// The slot of the piece at a position.
    pub(crate) fn slot(&self, pos: Pos) -> u32 {
        self.slot_at(pos)
    }

    /// The pieces that overlap `range`, in key order (whole pieces, not clipped to `range`).
    pub(crate) fn overlapping<'a>(
        &'a self,
        range: &'a Span,
    ) -> impl Iterator<Item = Piece<'a>> + 'a {
        let mut pos = if range.overlaps(&self.span) {
            Some(self.floor(range.start()).unwrap_or((0, 0)))
        } else {
            None
        };
        core::iter::from_fn(move || {
            let at = pos?;
            let start = self.key_at(at);
            if !below_end(start.as_bytes(), range.end().as_bytes()) {
                pos = None;
                return None;
            }
            pos = self.next_pos(at);
            let end = pos.map_or(self.span.end(), |next| self.key_at(next));
            Some(Piece { start, end, slot: self.slot_at(at) })
        })
    }

    /// Every piece, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Piece<'_>> + '_ {
        self.overlapping(&self.span)
    }

    /// Makes `key` (inside the span) a piece start holding `slot`. Returns the slot it had if it
    /// was a start already (it is replaced), or `None`, and `Err(())` for a key outside the span.
    pub(crate) fn insert_boundary(
        &mut self,
        key: &EncodedKey,
        slot: u32,
    ) -> Result<Option<u32>, ()> {
        if !self.span.contains_key(key.as_bytes()) {
            return Err(());
        }
        let at = self.locate(key);
        if at.exact {
            return Ok(Some(self.node_mut(0, at.leaf).replace_val(at.rank - 1, slot)));
        }
        self.insert_located(at, key.clone(), slot);
        Ok(None)
    }

    /// Inserts `key`, which is not a piece start, where [`Pieces::locate`] found it would go.
    pub(crate) fn insert_located(&mut self, at: Located, key: EncodedKey, slot: u32) {
        debug_assert!(!at.exact);
        self.len += 1;
        self.insert_into(0, at.leaf, at.rank, key, slot);
    }

    /// Inserts a key at index `i` of a node, splitting it when full.
    fn insert_into(&mut self, level: usize, id: u32, i: usize, key: EncodedKey, val: u32) {
        let node = self.node_mut(level, id);
        if node.len() < NODE_CAP {
            node.insert_at(i, key, val);
            self.refresh_after_key_change(level, id);
            return;
        }
        let right = if i == NODE_CAP {
            // After the last key of a full node: a new node starts at the key (ascending inserts
            // leave full nodes behind).
            let right = self.split_off(level, id, NODE_CAP, key.clone());
            self.node_mut(level, right).insert_at(0, key, val);
            right
        } else {
            let half = NODE_CAP / 2;
            let fence = node.keys[half].clone();
            let right = self.split_off(level, id, half, fence);
            match i <= half {
                true => self.node_mut(level, id).insert_at(i, key, val),
                false => self.node_mut(level, right).insert_at(i - half, key, val),
            }
            right
        };
        // `split_off` settled both halves' links and bounds; the new key may move a bound.
        self.refresh_after_key_change(level, id);
        self.refresh_after_key_change(level, right);
        self.route(level, right);
    }

    /// Moves the keys of a node from index `at` to a new node fenced at `fence`, linked after it.
    fn split_off(&mut self, level: usize, id: u32, at: usize, fence: EncodedKey) -> u32 {
        let mut right = Node::new(fence);
        let left = self.node_mut(level, id);
        for (j, i) in (at..left.len()).enumerate() {
            right.keys[j] = core::mem::take(&mut left.keys[i]);
            right.entries[j] = u128::from(left.val(i));
        }
        right.len = left.len - at as u32;
        left.len = at as u32;
        right.prev = id;
        right.next = left.next;
        let new = self.levels[level].alloc(right);
        let next = self.node(level, new).next;
        if next != NO_NODE {
            self.node_mut(level, next).prev = new;
        }
        self.node_mut(level, id).next = new;
        // Both halves have tighter bounds: recompute their prefixes and tags.
        for half in [id, new] {
            self.node_mut(level, half).prefix = usize::MAX;
            self.refresh_prefix(level, half);
        }
        new
    }

    /// Adds a new node's fence to the level above (a new root when the root split).
    fn route(&mut self, level: usize, id: u32) {
        let fence = self.node(level, id).fence.clone();
        let up = level + 1;
        if up == self.levels.len() {
            let mut root = Self::root_node(&self.span, 0);
            root.insert_at(1, fence, id);
            self.levels.push(Level::one(root));
            self.refresh_prefix(up, 0);
            return;
        }
        let parent = self.descend(&fence, up);
        let (rank, exact) = self.node(up, parent).rank(&fence);
        debug_assert!(!exact, "a new fence is not routed yet");
        self.insert_into(up, parent, rank, fence, id);
    }

    /// Removes the pieces that start strictly inside `range` (after its start, before its end),
    /// handing their slots to `removed` in key order; the piece at the range's start grows over
    /// them.
    pub(crate) fn remove_interior(&mut self, range: &Span, mut removed: impl FnMut(u32)) {
        let start = core::cmp::max(range.start(), self.span.start());
        let Some((mut leaf, floor)) = self.floor(start) else { return };
        let mut i = floor + 1;
        loop {
            let mut reached_end = false;
            let mut removed_here = false;
            while i < self.node(0, leaf).len() {
                let key = &self.node(0, leaf).keys[i];
                if !below_end(key.as_bytes(), range.end().as_bytes()) {
                    reached_end = true;
                    break;
                }
                removed(self.node_mut(0, leaf).remove_at(i));
                self.len -= 1;
                removed_here = true;
            }
            let next = self.node(0, leaf).next;
            if removed_here {
                self.refresh_after_key_change(0, leaf);
                self.after_removals(0, leaf);
            }
            if reached_end || next == NO_NODE {
                return;
            }
            (leaf, i) = (next, 0);
        }
    }

    /// Tidies a node after keys left it: an empty node goes away, a small one merges into its
    /// predecessor, and the level above stops routing to it.
    fn after_removals(&mut self, level: usize, id: u32) {
        let node = self.node(level, id);
        let prev = node.prev;
        if prev == NO_NODE
            || (node.len() > 0 && node.len() + self.node(level, prev).len() > NODE_CAP / 2)
        {
            return;
        }
        let mut gone =
            core::mem::replace(self.node_mut(level, id), Node::new(EncodedKey::default()));
        let before = self.node_mut(level, prev);
        for j in 0..gone.len() {
            let key = core::mem::take(&mut gone.keys[j]);
            before.insert_at(before.len(), key, gone.val(j));
        }
        before.next = gone.next;
        if gone.next != NO_NODE {
            self.node_mut(level, gone.next).prev = prev;
        }
        self.levels[level].free.push(id);
        // `prev` reaches further now: its shared prefix may be shorter.
        self.refresh_prefix(level, prev);
        // The level above stops routing to the merged node.
        let up = level + 1;
        let parent = self.descend(&gone.fence, up);
        let (rank, exact) = self.node(up, parent).rank(&gone.fence);
        debug_assert!(exact, "a node's fence is routed");
        self.node_mut(up, parent).remove_at(rank - 1);
        self.refresh_after_key_change(up, parent);
        self.after_removals(up, parent);
        // A root with one child is not needed.
        while self.levels.len() > 1 && self.node(self.levels.len() - 1, 0).len() == 1 {
            self.levels.pop();
        }
    }

    /// Checks the structure, describing the first broken invariant.
    pub(crate) fn check_invariants(&self) -> Result<(), &'static str> {
        let mut below: Vec<(EncodedKey, u32)> = Vec::new();
        for (l, level) in self.levels.iter().enumerate() {
            let mut routed: Vec<(EncodedKey, u32)> = Vec::new();
            let mut fences: Vec<(EncodedKey, u32)> = Vec::new();
            let (mut id, mut prev) = (0u32, NO_NODE);
            while id != NO_NODE {
                let node = level.nodes.get(id as usize).ok_or("a node link points nowhere")?;
                if fences.len() >= level.nodes.len() {
                    return Err("a level's list has a cycle");
                }
                if node.prev != prev {
                    return Err("a node's back link is wrong");
                }
                if node.len() == 0 || node.len() > NODE_CAP {
                    return Err("a node is empty or overfull");
                }
                let upper = self.upper(l, id);
                if (node.skip_first, node.open_end, node.prefix) != self.search_bounds(l, id) {
                    return Err("a node's search bounds are wrong");
                }
                if fences.last().is_some_and(|(f, _)| *f >= node.fence) {
                    return Err("fences are not ascending");
                }
                for (i, key) in node.keys.iter().enumerate() {
                    if i >= node.len() {
                        if !key.is_empty() {
                            return Err("a node keeps a key past its length");
                        }
                        continue;
                    }
                    if routed.last().is_some_and(|(p, _)| p >= key) {
                        return Err("keys are not strictly ascending");
                    }
                    if *key < node.fence || !below_end(key.as_bytes(), upper.as_bytes()) {
                        return Err("a key lies outside its node's fences");
                    }
                    if tag_of(node.entries[i]) != tag(key.as_bytes(), node.prefix) {
                        return Err("a tag does not match its key");
                    }
                    routed.push((key.clone(), node.val(i)));
                }
                fences.push((node.fence.clone(), id));
                (prev, id) = (id, node.next);
            }
            if fences.len() + level.free.len() != level.nodes.len() {
                return Err("a level's nodes, list and free ids disagree");
            }
            if fences[0].0 != *self.span.start() {
                return Err("a level does not start at the span's start");
            }
            if l == 0 {
                if routed.len() != self.len {
                    return Err("the piece count is wrong");
                }
                if routed[0].0 != *self.span.start() {
                    return Err("no piece starts at the span's start");
                }
            } else if routed != below {
                return Err("a level does not route exactly the fences of the level below");
            }
            below = fences;
        }
        if below.len() != 1 {
            return Err("the top level is not one node");
        }
        if self.levels.len() > 1 && self.node(self.levels.len() - 1, 0).len() == 1 {
            return Err("the root routes to one node only");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::{TAG_BYTES, VALUE_BITS, is_exact, tag};

    /// The tag as its definition reads: the window bytes copied into a zeroed buffer.
    fn tag_by_definition(key: &[u8], prefix: usize) -> u128 {
        let rest = key.get(prefix..).unwrap_or_default();
        let mut buf = [0u8; 16];
        let window = rest.len().min(TAG_BYTES);
        buf[..window].copy_from_slice(&rest[..window]);
        buf[TAG_BYTES] = rest.len().min(TAG_BYTES + 1) as u8;
        u128::from_be_bytes(buf)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The word-loading tag equals the definition's for every key length (below, around and
        /// above 16 bytes) and prefix (inside, at and past the key's end), and orders keys that
        /// share the prefix.
        #[test]
        fn tags_follow_their_definition_and_order_keys(
            shared in prop::collection::vec(any::<u8>(), 0..24),
            a in prop::collection::vec(0u8..3, 0..20),
            b in prop::collection::vec(0u8..3, 0..20),
            extra in 0usize..3,
        ) {
            let prefix = shared.len();
            let (a, b): (Vec<u8>, Vec<u8>) =
                ([&shared[..], &a].concat(), [&shared[..], &b].concat());
            for (key, p) in [(&a, prefix), (&a, extra), (&a, prefix + extra + a.len()), (&b, prefix)] {
                prop_assert_eq!(tag(key, p), tag_by_definition(key, p));
                prop_assert_eq!(tag(key, p) & ((1 << VALUE_BITS) - 1), 0);
            }
            let (ta, tb) = (tag(&a, prefix), tag(&b, prefix));
            if a < b {
                prop_assert!(ta <= tb);
            }
            if ta == tb && is_exact(ta) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
