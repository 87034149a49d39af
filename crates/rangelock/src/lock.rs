//! The range lock of one subscription: which region owns which part of the span, and the
//! resolved ts of every part.

use alloc::vec::Vec;
use core::fmt;

use hashbrown::HashMap;
use kvfeed_span::{EncodedKey, Span, below_end};

use crate::min_tree::{MinTree, Timestamped};
use crate::pieces::Pieces;
use crate::prefetch::prefetch;
use crate::region_index::RegionIndex;

/// A waiting lock request, handed back by [`RangeLock::lock`] as [`LockOutcome::Wait`].
///
/// Keep it with the request; when an [`Unlocked`] or [`Stopped`] result lists it among `woken`,
/// call [`RangeLock::lock`] again with the same arguments. A ticket you give up on must be passed
/// to [`RangeLock::cancel_wait`].
#[must_use = "a waiting lock request is retried only when its ticket is woken"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub(crate) u64);

/// The result of [`RangeLock::lock`].
#[must_use = "a locked range must be requested from TiKV and unlocked when its region leaves"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    /// The range is now owned by the region. Request it from TiKV from `checkpoint_ts`, the
    /// minimum resolved ts of the parts it covers.
    Locked {
        /// The ts the region's incremental scan must start from.
        checkpoint_ts: u64,
    },
    /// Another region holds part of the range (or this region holds another range) with an older
    /// epoch: retry when the ticket is woken.
    Wait(Ticket),
    /// A region with the same or a newer epoch version holds part of the range (or this region
    /// id holds another range): this request is outdated. Nothing was locked; `retry` lists the
    /// parts of the range no region holds, to be reloaded from PD and locked afresh.
    Stale {
        /// The free parts of the requested range, in key order.
        retry: Vec<Span>,
    },
    /// The lock is stopped (the subscription is going away): drop the request.
    Cancelled,
}

/// The result of a successful [`RangeLock::unlock`].
#[must_use = "woken tickets must be retried, and `drained` ends the subscription"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlocked {
    /// The resolved ts the freed range keeps (the next region covering it starts from it).
    pub resolved_ts: u64,
    /// Waiting requests that may now succeed: call [`RangeLock::lock`] again for each.
    pub woken: Vec<Ticket>,
    /// True exactly once: the lock is stopped and this unlock released its last range.
    pub drained: bool,
}

/// The result of [`RangeLock::stop`].
#[must_use = "woken tickets must be retried (they get Cancelled) and `drained` ends the subscription"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Every waiting request; retrying gives [`LockOutcome::Cancelled`].
    pub woken: Vec<Ticket>,
    /// True when nothing was locked, so the subscription is drained already. Reported once.
    pub drained: bool,
}

/// Why [`RangeLock::lock`] refused its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// The range is not inside the subscription's span.
    OutOfSpan {
        /// The range given.
        range: Span,
    },
}

/// Why [`RangeLock::unlock`] refused its arguments. The lock is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnlockError {
    /// No locked range starts at the given start.
    NotLocked,
    /// The range there is locked by another region.
    WrongRegion {
        /// The region holding it.
        holder: u64,
    },
    /// The region holds it with another epoch version.
    WrongVersion {
        /// The version it was locked with.
        locked: u64,
    },
    /// The locked range has another end.
    WrongEnd {
        /// The end it was locked with (empty for plus infinity).
        locked: EncodedKey,
    },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfSpan { range } => write!(f, "range {range:?} is outside the locked span"),
        }
    }
}

impl fmt::Display for UnlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLocked => write!(f, "no locked range starts there"),
            Self::WrongRegion { holder } => write!(f, "the range is locked by region {holder}"),
            Self::WrongVersion { locked } => {
                write!(f, "the range was locked with version {locked}")
            }
            Self::WrongEnd { locked } => write!(f, "the locked range ends at {locked:?}"),
        }
    }
}

impl core::error::Error for LockError {}
impl core::error::Error for UnlockError {}

/// What [`RangeLock::advance`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advance {
    /// The region's resolved ts rose to the given ts.
    Advanced,
    /// The ts is not above the region's current one; nothing changed.
    NotHigher,
    /// The region has not finished its incremental scan; its resolved ts stays at its checkpoint.
    NotInitialized,
    /// No range of this lock is held by the region.
    NotLocked,
}

/// One locked range, as seen by [`RangeLock::locked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedRange<'a> {
    /// First key of the range.
    pub start: &'a EncodedKey,
    /// End of the range (exclusive; empty for plus infinity).
    pub end: &'a EncodedKey,
    /// The region holding it.
    pub region_id: u64,
    /// The epoch version it was locked with.
    pub version: u64,
    /// The region's resolved ts (its checkpoint until it advances).
    pub resolved_ts: u64,
    /// Whether the region finished its incremental scan.
    pub initialized: bool,
}

/// A region and its resolved ts, in [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionTs {
    /// The region.
    pub region_id: u64,
    /// Its resolved ts.
    pub resolved_ts: u64,
    /// Whether it finished its incremental scan.
    pub initialized: bool,
}

/// The regions lagging a ts ([`RangeLock::lagging`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lagging {
    /// Locked regions below the ts, up to the limit asked for.
    pub regions: Vec<RegionTs>,
    /// Whether more locked regions are below the ts than the limit.
    pub truncated: bool,
    /// Parts of the span without a region whose ts is below it.
    pub holes: usize,
}

/// A summary of a lock, for slow-region reports: `O(n)` to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Number of locked ranges.
    pub locked: usize,
    /// The locked region with the lowest resolved ts (the first in key order on ties).
    pub slowest: Option<RegionTs>,
    /// The locked region with the highest resolved ts (the first in key order on ties).
    pub fastest: Option<RegionTs>,
    /// The parts no region holds, each with the lowest resolved ts inside it.
    pub holes: Vec<(Span, u64)>,
}

/// Where a lock's heap bytes are ([`RangeLock::memory`]), as allocated (vectors' spare capacity
/// included; the allocator's own overhead not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// The piece index's bottom level: its nodes' tags, values and headers.
    pub piece_leaves: usize,
    /// The piece index's levels above.
    pub piece_inner: usize,
    /// The per-node boxes of keys: each key's handle, holding a key of up to
    /// [`EncodedKey::INLINE`] bytes (a TiDB record key) inside.
    pub key_handles: usize,
    /// The bytes of longer keys, stored apart from their handles.
    pub key_bytes: usize,
    /// The slots: each piece's resolved ts, kind and generation.
    pub slots: usize,
    /// The holders of locked slots: region id and version.
    pub owners: usize,
    /// The min tree's inner nodes.
    pub min_tree: usize,
    /// The region id index.
    pub region_index: usize,
    /// The free slot list, and the waiting requests' tickets.
    pub other: usize,
}

impl Memory {
    /// All of it.
    pub fn total(&self) -> usize {
        self.piece_leaves
            + self.piece_inner
            + self.key_handles
            + self.key_bytes
            + self.slots
            + self.owners
            + self.min_tree
            + self.region_index
            + self.other
    }
}

/// How many regions a batch advance looks up together (see [`RangeLock::advance_batch`]): enough
/// to keep the CPU's outstanding misses busy.
const PIPELINE: usize = 16;

/// What a slab slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    /// On the free list.
    Free,
    /// An unlocked piece; its ts is the resolved ts it keeps.
    Unlocked,
    /// A locked range.
    Locked { initialized: bool },
}

/// A slab slot: one piece of the partition, a leaf of the min tree: what advancing a region
/// reads and writes, and nothing else (16 bytes, aligned: four to a cache line, so a batch of
/// regions streams through a quarter of the memory a whole record would take). Who holds a
/// locked slot is in [`Owner`], beside it.
#[derive(Clone, Copy, Debug)]
#[repr(align(16))]
struct Slot {
    /// The piece's resolved ts; `u64::MAX` for a free slot.
    ts: u64,
    kind: SlotKind,
    /// Bumped each time the slot is locked, so a [`RegionHandle`] of an earlier lock is refused
    /// (32 bits: a handle would have to outlive four billion locks of its slot to be taken for
    /// a later one).
    generation: u32,
}

// Four slots to a cache line, never one across two.
const _: () = assert!(core::mem::size_of::<Slot>() == 16);

impl Slot {
    const FREE: Self = Self { ts: u64::MAX, kind: SlotKind::Free, generation: 0 };
}

/// The region holding a locked slot, and at which epoch version (stale for other slots).
#[derive(Clone, Copy, Debug, Default)]
struct Owner {
    region_id: u64,
    version: u64,
}

impl Timestamped for Slot {
    #[inline]
    fn ts(&self) -> u64 {
        self.ts
    }
}

/// A cheap reference to a locked region, for advancing it without a region-id lookup.
///
/// Valid while the region holds the range it had when the handle was taken; afterwards the
/// handle's calls answer [`Advance::NotLocked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionHandle {
    slot: u32,
    generation: u32,
}

/// The range lock of one subscription. See the crate docs for the model and how to share it.
#[derive(Clone)]
pub struct RangeLock {
    /// Every piece of the span, locked or not, keyed by start; the value is the piece's slot.
    /// Invariant: each slot in use is referenced by exactly one piece.
    pieces: Pieces,
    /// Piece data by slot, in a min tree of their ts (free slots hold `u64::MAX`, and are listed
    /// in `free`). Its minimum is the resolved ts.
    slots: MinTree<Slot>,
    /// By slot, as `slots`: the holder of each locked slot. Invariant: as long as `slots`.
    owners: Vec<Owner>,
    free: Vec<u32>,
    /// Region id -> slot of its locked range, with a hint of the leaf of `pieces` it starts in.
    /// Invariant: at most one locked range per region, and exactly the locked slots appear here
    /// (the hints may be outdated: they are only where a search starts).
    regions: RegionIndex,
    /// Slot -> tickets waiting for that locked range to go. Only locked slots appear.
    waiters: HashMap<u32, Vec<u64>>,
    /// Ticket -> number of locked ranges it still waits for.
    tickets: HashMap<u64, u32>,
    next_ticket: u64,
    /// How many locked slots are initialized.
    initialized: usize,
    /// The leaf of the last lookup in `pieces`, where the next one starts: a region unlocked and
    /// locked again (an error, a retry) finds its leaf without a descent. Only a hint.
    finger: u32,
    start_ts: u64,
    stopped: bool,
    /// Whether `drained` has been reported (it is reported once).
    drained: bool,
}

impl RangeLock {
    /// A lock over `span` where every part starts with resolved ts `start_ts`.
    pub fn new(span: Span, start_ts: u64) -> Self {
        Self::with_capacity(span, start_ts, 0)
    }

    /// A lock with room for `regions` locked ranges before it reallocates (for a subscription
    /// whose region count is known, such as after a PD scan).
    pub fn with_capacity(span: Span, start_ts: u64, regions: usize) -> Self {
        let mut slots = MinTree::with_capacity(regions + 1);
        slots.push(Slot { ts: start_ts, kind: SlotKind::Unlocked, ..Slot::FREE });
        let mut owners = Vec::with_capacity(regions + 1);
        owners.push(Owner::default());
        Self {
            pieces: Pieces::new(span, 0),
            slots,
            owners,
            free: Vec::new(),
            regions: RegionIndex::with_capacity(regions),
            waiters: HashMap::new(),
            tickets: HashMap::new(),
            next_ticket: 1,
            initialized: 0,
            finger: 0,
            start_ts,
            stopped: false,
            drained: false,
        }
    }

    /// The subscription's span.
    pub fn span(&self) -> &Span {
        self.pieces.span()
    }

    /// The ts the subscription started from.
    pub fn start_ts(&self) -> u64 {
        self.start_ts
    }

    /// Number of locked ranges.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Number of locked ranges whose region is initialized (finished its incremental scan).
    /// `O(1)`.
    pub fn initialized_len(&self) -> usize {
        self.initialized
    }

    /// Whether no range is locked.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Whether [`RangeLock::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The subscription's resolved ts: the minimum over every part of the span, locked or not.
    /// `O(1)`.
    pub fn resolved_ts(&self) -> u64 {
        self.slots.min()
    }

    /// Tries to lock `range` for `region_id` at epoch `version`.
    pub fn lock(
        &mut self,
        range: &Span,
        region_id: u64,
        version: u64,
    ) -> Result<LockOutcome, LockError> {
        if !range.is_sub_span(self.pieces.span()) {
            return Err(LockError::OutOfSpan { range: range.clone() });
        }
        if self.stopped {
            return Ok(LockOutcome::Cancelled);
        }
        // The region index is read after the descent: request its line first.
        self.regions.prefetch(region_id);
        // One pass over the pieces the range overlaps: the locked ones are in the way, the
        // unlocked ones give the checkpoint.
        let cover = self.pieces.cover(range, self.finger);
        self.finger = cover.last.0;
        let mut blocking: Vec<u32> = Vec::new();
        let mut stale = false;
        let mut checkpoint = u64::MAX;
        for slot in self.pieces.cover_slots(&cover) {
            let entry = self.slots.leaf(slot);
            if let SlotKind::Locked { .. } = entry.kind {
                stale |= self.owners[slot as usize].version >= version;
                blocking.push(slot);
            } else {
                checkpoint = checkpoint.min(entry.ts);
            }
        }
        // Then the range this region holds elsewhere, if any.
        if let Some(own) = self.regions.get(region_id)
            && !blocking.contains(&own)
        {
            stale |= self.owners[own as usize].version >= version;
            blocking.push(own);
        }
        if stale {
            return Ok(LockOutcome::Stale { retry: self.free_parts(range) });
        }
        if !blocking.is_empty() {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.tickets.insert(ticket, blocking.len() as u32);
            for slot in blocking {
                self.waiters.entry(slot).or_default().push(ticket);
            }
            return Ok(LockOutcome::Wait(Ticket(ticket)));
        }

        // The range is free: make it one piece. Pieces cut by its bounds keep their ts on the
        // outside; the first piece inside (or a new one at the start) becomes the locked one.
        let first_slot = self.pieces.slot(cover.first);
        if let Some(end_at) = cover.end_at {
            let right = self.alloc_unlocked(self.slots.leaf(self.pieces.slot(cover.last)).ts);
            self.pieces.insert_located(end_at, range.end().clone(), right);
        }
        let slot = if cover.start_is_boundary {
            first_slot
        } else {
            let slot = self.alloc_unlocked(checkpoint);
            let inside = "range was checked to lie inside the span";
            self.pieces.insert_boundary(range.start(), slot).expect(inside);
            slot
        };
        if cover.first != cover.last {
            let Self { pieces, slots, free, .. } = self;
            pieces.remove_interior(range, |old| {
                slots.update(old, |entry| {
                    *entry = Slot { generation: entry.generation, ..Slot::FREE }
                });
                free.push(old);
            });
        }
        let kind = SlotKind::Locked { initialized: false };
        self.slots.update(slot, |entry| {
            let generation = entry.generation.wrapping_add(1);
            *entry = Slot { ts: checkpoint, kind, generation };
        });
        self.owners[slot as usize] = Owner { region_id, version };
        // Where the range starts, as far as this lock knows: its unlock starts looking there.
        let leaf_hint = cover.first.0;
        let previous = self.regions.insert(region_id, slot, leaf_hint);
        debug_assert!(previous.is_none(), "a region locks one range at a time");
        Ok(LockOutcome::Locked { checkpoint_ts: checkpoint })
    }

    /// A new slot for an unlocked piece holding `ts`.
    fn alloc_unlocked(&mut self, ts: u64) -> u32 {
        let unlocked = |generation| Slot { ts, kind: SlotKind::Unlocked, generation };
        match self.free.pop() {
            Some(slot) => {
                self.slots.update(slot, |entry| *entry = unlocked(entry.generation));
                slot
            }
            None => {
                self.owners.push(Owner::default());
                self.slots.push(unlocked(0))
            }
        }
    }

    /// The parts of `range` that no region holds, merged into maximal runs, in key order.
    fn free_parts(&self, range: &Span) -> Vec<Span> {
        let mut retry = Vec::new();
        let mut cursor = range.start().clone();
        for piece in self.pieces.overlapping(range) {
            if !matches!(self.slots.leaf(piece.slot).kind, SlotKind::Locked { .. }) {
                continue;
            }
            if cursor.as_bytes() < piece.start.as_bytes() {
                retry.push(
                    Span::new(cursor, piece.start.clone()).expect("cursor is below the piece"),
                );
            }
            cursor = piece.end.clone();
            if cursor.is_empty() {
                return retry;
            }
        }
        if below_end(cursor.as_bytes(), range.end().as_bytes()) {
            retry.push(Span::new(cursor, range.end().clone()).expect("cursor is below the end"));
        }
        retry
    }

    /// Gives up a waiting request. Returns whether the ticket was still waiting.
    pub fn cancel_wait(&mut self, ticket: Ticket) -> bool {
        // The ticket stays listed under the ranges it waited for; unlocking them skips it.
        self.tickets.remove(&ticket.0).is_some()
    }

    /// Releases the range `region_id` locked at `version`. The freed range keeps `resolved_ts`
    /// if given, else the region's own resolved ts (the usual case: the lock already knows it).
    ///
    /// A given ts is taken as is: a lower one only makes the next region re-scan more; a higher
    /// one than the region really resolved would skip data, so pass `None` unless you know better.
    pub fn unlock(
        &mut self,
        range: &Span,
        region_id: u64,
        version: u64,
        resolved_ts: Option<u64>,
    ) -> Result<Unlocked, UnlockError> {
        // The region's entry tells its slot and the leaf its range was locked in, before any
        // search: request the slot now, and start the search at that leaf, so that at scale
        // their misses overlap instead of following a descent's. The search stays the authority
        // on what is locked where (a wrong or outdated leaf only costs a descent).
        let finger = match self.regions.get_with_hint(region_id) {
            Some((slot, leaf_hint)) => {
                self.pieces.prefetch_leaf(leaf_hint);
                prefetch(self.slots.leaf_ptr(slot));
                prefetch(self.owners.as_ptr().wrapping_add(slot as usize));
                leaf_hint
            }
            None => self.finger,
        };
        // One search finds the piece starting at the range's start; its slot and its end (the
        // next start, compared by tag) check the arguments exactly.
        let (pos, end_matches) = self
            .pieces
            .find_starting_at(range.start(), range.end(), finger)
            .ok_or(UnlockError::NotLocked)?;
        self.finger = pos.0;
        let slot = self.pieces.slot(pos);
        let entry = *self.slots.leaf(slot);
        if !matches!(entry.kind, SlotKind::Locked { .. }) {
            return Err(UnlockError::NotLocked);
        }
        let owner = self.owners[slot as usize];
        if owner.region_id != region_id {
            return Err(UnlockError::WrongRegion { holder: owner.region_id });
        }
        if owner.version != version {
            return Err(UnlockError::WrongVersion { locked: owner.version });
        }
        if !end_matches {
            return Err(UnlockError::WrongEnd { locked: self.pieces.end_at(pos).clone() });
        }
        self.initialized -= usize::from(entry.kind == SlotKind::Locked { initialized: true });
        let resolved_ts = self.slots.update(slot, |entry| {
            let ts = resolved_ts.unwrap_or(entry.ts);
            *entry = Slot { ts, kind: SlotKind::Unlocked, generation: entry.generation };
            ts
        });
        let indexed = self.regions.remove(region_id);
        debug_assert_eq!(indexed, Some(slot), "the region index points at the unlocked range");
        let mut woken = Vec::new();
        for ticket in self.waiters.remove(&slot).unwrap_or_default() {
            if let Some(remaining) = self.tickets.get_mut(&ticket) {
                *remaining -= 1;
                if *remaining == 0 {
                    self.tickets.remove(&ticket);
                    woken.push(Ticket(ticket));
                }
            }
        }
        Ok(Unlocked { resolved_ts, woken, drained: self.report_drained() })
    }

    /// Stops the lock: later locks are cancelled and every waiting request is woken (to be
    /// cancelled on retry). `drained` is true if nothing is locked.
    pub fn stop(&mut self) -> Stopped {
        self.stopped = true;
        let mut woken: Vec<Ticket> = self.tickets.drain().map(|(t, _)| Ticket(t)).collect();
        woken.sort_unstable();
        self.waiters.clear();
        Stopped { woken, drained: self.report_drained() }
    }

    fn report_drained(&mut self) -> bool {
        if self.stopped && !self.drained && self.regions.is_empty() {
            self.drained = true;
            true
        } else {
            false
        }
    }

    /// Marks the region's incremental scan as done, so its resolved ts may advance. Returns
    /// false if the region holds no range here.
    pub fn mark_initialized(&mut self, region_id: u64) -> bool {
        let Some(slot) = self.regions.get(region_id) else { return false };
        if self.slots.leaf(slot).kind == (SlotKind::Locked { initialized: false }) {
            self.initialized += 1;
            self.slots.update(slot, |entry| entry.kind = SlotKind::Locked { initialized: true });
        }
        true
    }

    /// Marks the region as not initialized again: it is registered anew, and its new
    /// incremental scan has not ended, so its resolved ts stays where it is until
    /// [`RangeLock::mark_initialized`]. Returns false if the region holds no range here.
    pub fn mark_uninitialized(&mut self, region_id: u64) -> bool {
        let Some(slot) = self.regions.get(region_id) else { return false };
        if self.slots.leaf(slot).kind == (SlotKind::Locked { initialized: true }) {
            self.initialized -= 1;
            self.slots.update(slot, |entry| entry.kind = SlotKind::Locked { initialized: false });
        }
        true
    }

    /// Raises the region's resolved ts to `ts`. Resolved ts never decreases, and stays at the
    /// checkpoint until the region is initialized.
    pub fn advance(&mut self, region_id: u64, ts: u64) -> Advance {
        match self.regions.get(region_id) {
            Some(slot) => self.advance_slot(slot, ts),
            None => Advance::NotLocked,
        }
    }

    /// Raises the resolved ts of every listed region to `ts` (one TiKV resolved-ts batch).
    /// Returns how many regions advanced. The same as [`RangeLock::advance`] for each in turn.
    ///
    /// At scale each region's update is a few cache misses (its index entry, then its slot and
    /// the min tree above it); the regions are taken 16 at a time, and each step's lines
    /// requested for the whole group before any is read, so the misses overlap.
    pub fn advance_batch(&mut self, regions: impl IntoIterator<Item = u64>, ts: u64) -> usize {
        let mut regions = regions.into_iter();
        let mut advanced = 0;
        loop {
            let mut group = [0u64; PIPELINE];
            let len = group.iter_mut().zip(regions.by_ref()).map(|(at, id)| *at = id).count();
            for &region in &group[..len] {
                self.regions.prefetch(region);
            }
            let mut slots = [None; PIPELINE];
            for (slot, &region) in slots.iter_mut().zip(&group[..len]) {
                *slot = self.regions.get(region);
                if let Some(slot) = *slot {
                    self.slots.prefetch_update(slot);
                }
            }
            for slot in slots[..len].iter().flatten() {
                advanced += usize::from(self.advance_slot(*slot, ts) == Advance::Advanced);
            }
            if len < PIPELINE {
                return advanced;
            }
        }
    }

    /// A handle to the range `region_id` holds, for [`RangeLock::advance_handle`].
    pub fn handle(&self, region_id: u64) -> Option<RegionHandle> {
        let slot = self.regions.get(region_id)?;
        Some(RegionHandle { slot, generation: self.slots.leaf(slot).generation })
    }

    /// [`RangeLock::advance`] through a handle: no region-id lookup.
    #[inline]
    pub fn advance_handle(&mut self, handle: RegionHandle, ts: u64) -> Advance {
        match self.slots.get(handle.slot) {
            Some(entry) if entry.generation == handle.generation => {
                self.advance_slot(handle.slot, ts)
            }
            _ => Advance::NotLocked,
        }
    }

    /// [`RangeLock::advance_batch`] through handles. Returns how many regions advanced.
    ///
    /// Handles are taken 16 at a time and the lines each one's update reads first (its
    /// slot and the min-tree node above it) requested for the whole group before any is read,
    /// so that regions spread over a large span cost overlapping misses, not one after another.
    pub fn advance_handles(
        &mut self,
        handles: impl IntoIterator<Item = RegionHandle>,
        ts: u64,
    ) -> usize {
        let mut handles = handles.into_iter();
        let mut advanced = 0;
        loop {
            let mut group = [RegionHandle { slot: 0, generation: 0 }; PIPELINE];
            let len = group.iter_mut().zip(handles.by_ref()).map(|(at, h)| *at = h).count();
            for handle in &group[..len] {
                self.slots.prefetch_update(handle.slot);
            }
            for &handle in &group[..len] {
                advanced += usize::from(self.advance_handle(handle, ts) == Advance::Advanced);
            }
            if len < PIPELINE {
                return advanced;
            }
        }
    }

    fn advance_slot(&mut self, slot: u32, ts: u64) -> Advance {
        let entry = self.slots.leaf(slot);
        match entry.kind {
            SlotKind::Locked { initialized: true } => {}
            SlotKind::Locked { initialized: false } => return Advance::NotInitialized,
            SlotKind::Free | SlotKind::Unlocked => return Advance::NotLocked,
        }
        if ts <= entry.ts {
            return Advance::NotHigher;
        }
        self.slots.update(slot, |entry| entry.ts = ts);
        Advance::Advanced
    }

    /// The region's resolved ts and whether it is initialized, if it holds a range here.
    pub fn region(&self, region_id: u64) -> Option<RegionTs> {
        let slot = self.regions.get(region_id)?;
        let entry = self.slots.leaf(slot);
        let SlotKind::Locked { initialized } = entry.kind else { return None };
        Some(RegionTs { region_id, resolved_ts: entry.ts, initialized })
    }

    /// Every locked range, in key order.
    pub fn locked(&self) -> impl Iterator<Item = LockedRange<'_>> + '_ {
        self.pieces.iter().filter_map(|piece| {
            let entry = self.slots.leaf(piece.slot);
            let SlotKind::Locked { initialized } = entry.kind else { return None };
            let owner = self.owners[piece.slot as usize];
            Some(LockedRange {
                start: piece.start,
                end: piece.end,
                region_id: owner.region_id,
                version: owner.version,
                resolved_ts: entry.ts,
                initialized,
            })
        })
    }

    /// Up to `limit` locked regions whose resolved ts is below `below` (the regions lagging a
    /// target), and how many parts without a region are below it too, found through the min
    /// tree: `O(k log n)` for the `k` pieces below `below`, however many ranges are locked. In
    /// slot order, not key order.
    pub fn lagging(&self, below: u64, limit: usize) -> Lagging {
        let mut lagging = Lagging::default();
        self.slots.for_each_below(below, |slot| {
            let entry = self.slots.leaf(slot);
            match entry.kind {
                SlotKind::Locked { initialized } => {
                    if lagging.regions.len() == limit {
                        lagging.truncated = true;
                        return false;
                    }
                    lagging.regions.push(RegionTs {
                        region_id: self.owners[slot as usize].region_id,
                        resolved_ts: entry.ts,
                        initialized,
                    });
                }
                SlotKind::Unlocked => lagging.holes += 1,
                SlotKind::Free => {}
            }
            true
        });
        lagging
    }

    /// The locked region with the lowest resolved ts, or `None` when no range is locked:
    /// `O(log n)`, plus `O(log n)` per part without a region whose ts is lower (ties between
    /// regions are broken arbitrarily, not in key order as in [`RangeLock::stats`]).
    pub fn slowest(&self) -> Option<RegionTs> {
        let slot =
            self.slots.min_leaf_where(|slot| matches!(slot.kind, SlotKind::Locked { .. }))?;
        let entry = self.slots.leaf(slot);
        let SlotKind::Locked { initialized } = entry.kind else { return None };
        let region_id = self.owners[slot as usize].region_id;
        Some(RegionTs { region_id, resolved_ts: entry.ts, initialized })
    }

    /// Where the lock's heap bytes are, by part: `O(n / 32)` (one visit per index node).
    pub fn memory(&self) -> Memory {
        let pieces = self.pieces.heap_bytes();
        let (slots, min_tree) = self.slots.heap_bytes();
        use core::mem::size_of;
        let waiting = self.waiters.capacity() * size_of::<(u32, Vec<u64>)>()
            + self.waiters.values().map(|w| w.capacity() * size_of::<u64>()).sum::<usize>()
            + self.tickets.capacity() * size_of::<(u64, u32)>();
        Memory {
            piece_leaves: pieces.leaves,
            piece_inner: pieces.inner,
            key_handles: pieces.key_boxes,
            key_bytes: pieces.key_bytes,
            slots,
            owners: self.owners.capacity() * size_of::<Owner>(),
            min_tree,
            region_index: self.regions.heap_bytes(),
            other: self.free.capacity() * size_of::<u32>() + waiting,
        }
    }

    /// Slowest and fastest regions and the holes with their ts. `O(n)`: for periodic reports.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats { locked: 0, slowest: None, fastest: None, holes: Vec::new() };
        let mut hole: Option<(EncodedKey, EncodedKey, u64)> = None;
        for piece in self.pieces.iter() {
            let entry = self.slots.leaf(piece.slot);
            let ts = entry.ts;
            if let SlotKind::Locked { initialized } = entry.kind {
                stats.locked += 1;
                let region_id = self.owners[piece.slot as usize].region_id;
                let region = RegionTs { region_id, resolved_ts: ts, initialized };
                if stats.slowest.is_none_or(|s| ts < s.resolved_ts) {
                    stats.slowest = Some(region);
                }
                if stats.fastest.is_none_or(|f| ts > f.resolved_ts) {
                    stats.fastest = Some(region);
                }
                if let Some((start, end, min)) = hole.take() {
                    stats.holes.push((Span::new(start, end).expect("holes are not empty"), min));
                }
            } else {
                match &mut hole {
                    Some((_, end, min)) => {
                        *end = piece.end.clone();
                        *min = (*min).min(ts);
                    }
                    None => hole = Some((piece.start.clone(), piece.end.clone(), ts)),
                }
            }
        }
        if let Some((start, end, min)) = hole {
            stats.holes.push((Span::new(start, end).expect("holes are not empty"), min));
        }
        stats
    }

    /// Checks every structural invariant (reference §3.8), describing the first one broken.
    /// Used by tests and fuzzing; `O(n)`.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        self.pieces.check_invariants()?;
        self.slots.check()?;
        self.regions.check()?;
        let slots = self.slots.leaves();
        let mut seen = alloc::vec![false; slots.len()];
        let (mut locked, mut initialized) = (0, 0);
        for piece in self.pieces.iter() {
            let slot = piece.slot as usize;
            if slot >= slots.len() || core::mem::replace(&mut seen[slot], true) {
                return Err("a slot is referenced by two pieces");
            }
            match slots[slot].kind {
                SlotKind::Free => return Err("a piece references a free slot"),
                SlotKind::Unlocked => {}
                SlotKind::Locked { initialized: done } => {
                    locked += 1;
                    initialized += usize::from(done);
                    if self.regions.get(self.owners[slot].region_id) != Some(slot as u32) {
                        return Err("a locked range is not indexed by its region id");
                    }
                }
            }
        }
        if self.owners.len() != slots.len() {
            return Err("the owners are not one per slot");
        }
        if locked != self.regions.len() {
            return Err("the region index lists a range that is not locked");
        }
        if initialized != self.initialized {
            return Err("the initialized count disagrees with the locked ranges");
        }
        for (slot, used) in seen.iter().enumerate() {
            let free = slots[slot].kind == SlotKind::Free;
            if *used == free {
                return Err("slot free list disagrees with the pieces");
            }
            if free && slots[slot].ts != u64::MAX {
                return Err("a free slot holds a ts");
            }
        }
        if self.free.len() != seen.iter().filter(|used| !**used).count() {
            return Err("free list length disagrees with the free slots");
        }
        if self.stopped && !self.tickets.is_empty() {
            return Err("a stopped lock has waiting tickets");
        }
        if self.drained && !(self.stopped && self.regions.is_empty()) {
            return Err("drained reported while ranges are locked");
        }
        Ok(())
    }
}

impl fmt::Debug for RangeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for piece in self.pieces.iter() {
            let entry = self.slots.leaf(piece.slot);
            let ts = entry.ts;
            match entry.kind {
                SlotKind::Locked { initialized } => list.entry(&format_args!(
                    "{:?} r{} v{} @{ts}{}",
                    piece.span(),
                    self.owners[piece.slot as usize].region_id,
                    self.owners[piece.slot as usize].version,
                    if initialized { "" } else { " (scanning)" }
                )),
                _ => list.entry(&format_args!("{:?} free @{ts}", piece.span())),
            };
        }
        list.finish()
    }
}
