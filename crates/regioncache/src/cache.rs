//! The region and store cache: a plain data structure, sans I/O.
//!
//! [`RegionCache`] holds what this client believes about the cluster: regions by start key and by
//! id, each with its epoch, peers and leader, and stores by id. It never talks to PD, never reads a
//! clock and never waits: the I/O layer ([`crate::PdRegionSource`]) fills it from PD and asks it
//! where to send requests, and tells it what TiKV answered (`NotLeader`, `EpochNotMatch`, a failed
//! send) so the next request goes elsewhere or the region is reloaded.
//!
//! The rule that keeps it consistent: **no two cached regions overlap**. [`RegionCache::insert`]
//! enforces it, comparing epochs: a region evicts every cached region it overlaps unless one of them
//! is newer (a larger `version`, or for the same region id an epoch the new one is stale against:
//! either field lower), in which case the
//! insert is refused as stale and nothing changes. [`RegionCache::check_invariants`] verifies the
//! structure.

use core::ops::Bound;

use hashbrown::HashMap;
use kvfeed_span::{EncodedKey, Span, below_end};
use std::collections::BTreeMap;

#[cfg(doc)]
use crate::meta::RegionEpoch;
use crate::meta::{Peer, PeerId, Region, RegionId, RegionVerId, Store, StoreId, StoreState};

/// Regions and stores this client knows about.
#[derive(Default)]
pub struct RegionCache {
    /// Start key to region id, for look-ups by key.
    ///
    /// Invariant: the regions of `by_id`, in start-key order, do not overlap (each one's end is at
    /// or below the next one's start, and only the last may end at plus infinity); this map has
    /// exactly one entry `(region.start(), region.id())` for each region of `by_id`, and nothing
    /// else.
    by_start: BTreeMap<EncodedKey, RegionId>,
    /// The regions, by id, with their routing state.
    /// Boxed: entries are large, and a map of inline entries wastes a third of its slots.
    by_id: HashMap<RegionId, Box<Entry>>,
    /// Stores by store id, never by address. Invariant: no tombstone is kept.
    stores: HashMap<StoreId, StoreEntry>,
}

/// A cached region and where to send its next request.
struct Entry {
    region: Region,
    /// The peer to try while the leader is unknown: an index into `region.peers()`, always in
    /// bounds.
    cursor: usize,
    /// Send failures, skipped peers and `NotLeader` answers without a leader hint since the
    /// region was cached or its leader learned; reaching the number of peers that can lead
    /// invalidates the region.
    failures: usize,
}

/// A cached store.
struct StoreEntry {
    store: Store,
    /// Set when the store's address may be out of date (a send to it failed, or another store
    /// now claims its address): reload it from PD before use.
    stale: bool,
}

/// What [`RegionCache::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The region is cached; `evicted` overlapping regions (other ids) were removed.
    Inserted {
        /// How many other regions the new one replaced.
        evicted: usize,
    },
    /// A cached region overlapping it is newer: nothing changed.
    Stale,
}

/// What [`RegionCache::update_leader`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderUpdate {
    /// The leader is now the peer given.
    Updated,
    /// No leader was given: the next request goes to the next peer that can lead.
    Switched,
    /// The leader given is not a peer of the cached region, or no leader was given and every
    /// peer that can lead has now answered `NotLeader` without a hint or failed (a full round):
    /// the region was removed, reload it.
    Invalidated,
    /// The cache holds no such region version: nothing changed.
    Stale,
}

/// What [`RegionCache::on_send_fail`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFail {
    /// The next request goes to this peer.
    Switched(Peer),
    /// Every peer that can lead failed: the region was removed, reload it.
    Invalidated,
    /// The cache holds no such region version, or already moved past that peer: nothing changed.
    Stale,
}

/// A broken [`RegionCache`] invariant, described.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("region cache invariant broken: {0}")]
pub struct InvariantViolation(pub String);

impl RegionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of cached regions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no region is cached.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Caches `region`, evicting the cached regions it overlaps, unless one of them is newer.
    ///
    /// A cached region is newer if its `version` is larger (it comes after a split or merge that
    /// `region` predates), or if it is the same region and `region`'s epoch is stale against it
    /// ([`RegionEpoch::is_stale_against`]: `version` or `conf_ver` lower; an inconsistent epoch,
    /// one field up and the other down, is refused too). When `region` knows no
    /// leader and the cache holds the same region at the same epoch with a leader, that leader is
    /// kept.
    pub fn insert(&mut self, mut region: Region) -> Insert {
        let mut victims = self.overlapping_ids(region.span());
        if self.by_id.contains_key(&region.id()) && !victims.contains(&region.id()) {
            victims.push(region.id());
        }
        for id in &victims {
            let Some(old) = self.by_id.get(id).map(|e| &e.region) else { continue };
            // Split/merge rule: across ids, only `version` orders overlapping regions. For the
            // same id, either field lower is stale, and so is an inconsistent epoch (one field
            // up, the other down): the cache keeps what it has.
            let newer = old.epoch().version > region.epoch().version
                || (old.id() == region.id() && region.epoch().is_stale_against(&old.epoch()));
            if newer {
                return Insert::Stale;
            }
        }
        if region.leader().is_none()
            && let Some(old) = self.by_id.get(&region.id())
            && old.region.epoch() == region.epoch()
            && let Some(leader) = old.region.leader()
        {
            let index = region.peers().iter().position(|p| p.id == leader.id);
            region.set_leader_index(index);
        }
        let mut evicted = 0;
        for id in victims {
            if id != region.id() {
                evicted += 1;
            }
            self.remove(id);
        }
        let id = region.id();
        self.by_start.insert(region.start().clone(), id);
        let cursor = first_leader_candidate(&region, 0).unwrap_or(0);
        self.by_id.insert(id, Box::new(Entry { region, cursor, failures: 0 }));
        Insert::Inserted { evicted }
    }

    /// The cached region with this id, whatever its epoch.
    pub fn get(&self, id: RegionId) -> Option<&Region> {
        self.by_id.get(&id).map(|e| &e.region)
    }

    /// The cached region if it is exactly this version.
    pub fn get_version(&self, ver: RegionVerId) -> Option<&Region> {
        self.get(ver.id).filter(|r| r.epoch() == ver.epoch)
    }

    /// The cached region containing the encoded `key`.
    pub fn region_at(&self, key: &[u8]) -> Option<&Region> {
        let (_, id) =
            self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        let region = &self.by_id.get(id)?.region;
        region.contains_key(key).then_some(region)
    }

    /// The cached regions overlapping `span`, in key order (with gaps where nothing is cached).
    pub fn regions_in(&self, span: &Span) -> Vec<&Region> {
        self.overlapping_ids(span).into_iter().filter_map(|id| self.get(id)).collect()
    }

    /// All cached regions in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Region> + '_ {
        self.by_start.values().filter_map(|id| self.get(*id))
    }

    /// The peer to send the next request for this region version to: the leader when known,
    /// otherwise the next peer that can lead. `None` if the cache holds another version of the
    /// region (or none), or no peer can lead: the caller should reload the region's range.
    pub fn target(&self, ver: RegionVerId) -> Option<Peer> {
        let entry = self.by_id.get(&ver.id)?;
        if entry.region.epoch() != ver.epoch {
            return None;
        }
        if let Some(leader) = entry.region.leader() {
            return Some(*leader);
        }
        let peer = entry.region.peers()[entry.cursor];
        peer.can_lead().then_some(peer)
    }

    /// Records a `NotLeader` answer for this region version, with the leader TiKV named if any.
    /// Without a leader the answer counts as a failure of the current peer (as in
    /// [`RegionCache::skip_peer`]): after a full round of such answers the region is removed.
    pub fn update_leader(&mut self, ver: RegionVerId, leader: Option<Peer>) -> LeaderUpdate {
        let Some(entry) = self.by_id.get_mut(&ver.id) else { return LeaderUpdate::Stale };
        if entry.region.epoch() != ver.epoch {
            return LeaderUpdate::Stale;
        }
        match leader {
            Some(leader) => {
                let index = entry.region.peers().iter().position(|p| p.id == leader.id);
                match index {
                    Some(index) if entry.region.peers()[index].can_lead() => {
                        entry.region.set_leader_index(Some(index));
                        entry.cursor = index;
                        entry.failures = 0;
                        LeaderUpdate::Updated
                    }
                    // The region's membership changed since PD told us about it.
                    _ => {
                        self.remove(ver.id);
                        LeaderUpdate::Invalidated
                    }
                }
            }
            // Counted like a failed send: once every peer that can lead has answered so (or
            // failed) since the region was cached or its leader learned, the region is removed
            // instead of cycling through its peers forever.
            None => {
                if entry.fail_over().is_some() {
                    LeaderUpdate::Switched
                } else {
                    self.remove(ver.id);
                    LeaderUpdate::Invalidated
                }
            }
        }
    }

    /// Records that sending a request for this region version to `peer_id` failed (the store was
    /// unreachable). The peer's store is marked stale, so its address is reloaded before the next
    /// use, and the peer is skipped as in [`RegionCache::skip_peer`].
    pub fn on_send_fail(&mut self, ver: RegionVerId, peer_id: PeerId) -> SendFail {
        if let Some(peer) = self.current_peer(ver).filter(|p| p.id == peer_id) {
            self.mark_store_stale(peer.store_id);
        }
        self.skip_peer(ver, peer_id)
    }

    /// Moves this region version's next request away from `peer_id` (its store failed or cannot
    /// serve it): to the next peer that can lead, or, once every such peer has been skipped since
    /// the region was cached or its leader learned, nowhere: the region is removed.
    pub fn skip_peer(&mut self, ver: RegionVerId, peer_id: PeerId) -> SendFail {
        if self.current_peer(ver).is_none_or(|p| p.id != peer_id) {
            return SendFail::Stale;
        }
        let Some(entry) = self.by_id.get_mut(&ver.id) else { return SendFail::Stale };
        match entry.fail_over() {
            Some(next) => SendFail::Switched(entry.region.peers()[next]),
            None => {
                self.remove(ver.id);
                SendFail::Invalidated
            }
        }
    }

    /// The peer the next request for this region version goes to (the leader, or the cursor's
    /// peer), whether or not it can lead.
    fn current_peer(&self, ver: RegionVerId) -> Option<Peer> {
        let entry = self.by_id.get(&ver.id).filter(|e| e.region.epoch() == ver.epoch)?;
        let index = entry.region.leader_index().unwrap_or(entry.cursor);
        Some(entry.region.peers()[index])
    }

    /// Removes the region if the cache holds this version of it or an older one (after
    /// `EpochNotMatch` or `RegionNotFound`): one whose epoch is lower or equal on both fields.
    /// Returns whether it was removed; a cached version newer on either field (`ver` is stale
    /// against it, [`RegionEpoch::is_stale_against`]) is kept.
    pub fn invalidate(&mut self, ver: RegionVerId) -> bool {
        match self.by_id.get(&ver.id) {
            Some(entry) if !ver.epoch.is_stale_against(&entry.region.epoch()) => {
                self.remove(ver.id);
                true
            }
            _ => false,
        }
    }

    /// Removes the region with this id, whatever its epoch. Returns it if it was cached.
    pub fn remove(&mut self, id: RegionId) -> Option<Region> {
        let entry = self.by_id.remove(&id)?;
        let removed = self.by_start.remove(entry.region.start().as_bytes());
        debug_assert_eq!(removed, Some(id), "by_start out of sync with by_id");
        Some(entry.region)
    }

    /// The number of cached stores.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// Caches a store from PD. A tombstone removes the store instead. Any other store cached with
    /// the same address is marked stale (its address moved, or it is gone), so it is reloaded
    /// before use. Returns the ids of the stores so marked.
    pub fn insert_store(&mut self, store: Store) -> Vec<StoreId> {
        if store.state == StoreState::Tombstone {
            self.stores.remove(&store.id);
            return Vec::new();
        }
        let mut displaced = Vec::new();
        for (id, entry) in &mut self.stores {
            if *id != store.id && !store.address.is_empty() && entry.store.address == store.address
            {
                entry.stale = true;
                displaced.push(*id);
            }
        }
        displaced.sort_unstable();
        self.stores.insert(store.id, StoreEntry { store, stale: false });
        displaced
    }

    /// The cached store, unless it is stale (then it should be reloaded from PD).
    pub fn store(&self, id: StoreId) -> Option<&Store> {
        self.stores.get(&id).filter(|e| !e.stale).map(|e| &e.store)
    }

    /// Marks a store stale: the next use reloads it from PD.
    pub fn mark_store_stale(&mut self, id: StoreId) {
        if let Some(entry) = self.stores.get_mut(&id) {
            entry.stale = true;
        }
    }

    /// Forgets a store (PD no longer knows it, or it became a tombstone).
    pub fn remove_store(&mut self, id: StoreId) -> Option<Store> {
        self.stores.remove(&id).map(|e| e.store)
    }

    /// Checks every structural invariant; returns the first one broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |msg: String| Err(InvariantViolation(msg));
        if self.by_start.len() != self.by_id.len() {
            return fail(format!(
                "{} start keys for {} regions",
                self.by_start.len(),
                self.by_id.len()
            ));
        }
        let mut prev: Option<&Region> = None;
        for (start, id) in &self.by_start {
            let Some(entry) = self.by_id.get(id) else {
                return fail(format!("start key {start:?} names uncached region {id}"));
            };
            let region = &entry.region;
            if region.id() != *id || region.start() != start {
                return fail(format!("start key {start:?} -> {id} but found {region:?}"));
            }
            if entry.cursor >= region.peers().len() {
                return fail(format!("region {id} cursor {} out of bounds", entry.cursor));
            }
            if let Some(prev) = prev
                && (prev.end().is_empty() || prev.end() > region.start())
            {
                return fail(format!("regions overlap: {prev:?} and {region:?}"));
            }
            prev = Some(region);
        }
        for (id, entry) in &self.stores {
            if entry.store.id != *id || entry.store.state == StoreState::Tombstone {
                return fail(format!("store entry {id} holds {:?}", entry.store));
            }
        }
        Ok(())
    }

    /// Ids of the cached regions overlapping `span`, in key order: walking down from the span's
    /// end, every region starting inside the span, then the one before them if it reaches in.
    fn overlapping_ids(&self, span: &Span) -> Vec<RegionId> {
        let start = span.start().as_bytes();
        let end = match span.end_bound() {
            Bound::Excluded(end) => Bound::Excluded(end),
            _ => Bound::Unbounded,
        };
        let mut ids = Vec::new();
        for (key, id) in self.by_start.range::<[u8], _>((Bound::Unbounded, end)).rev() {
            if key.as_bytes() >= start {
                ids.push(*id);
                continue;
            }
            if self.by_id.get(id).is_some_and(|e| below_end(start, e.region.end().as_bytes())) {
                ids.push(*id);
            }
            break;
        }
        ids.reverse();
        ids
    }
}

/// The index of the first peer at or after `from` (wrapping around) that can lead.
impl Entry {
    /// Counts a failure of the current peer and moves the cursor to the next peer that can lead.
    /// `None` once every such peer has failed since the region was cached or its leader learned:
    /// the caller removes the region.
    fn fail_over(&mut self) -> Option<usize> {
        let current = self.region.leader_index().unwrap_or(self.cursor);
        self.failures += 1;
        let candidates = self.region.peers().iter().filter(|p| p.can_lead()).count();
        let next = first_leader_candidate(&self.region, current + 1)
            .filter(|_| self.failures < candidates)?;
        self.region.set_leader_index(None);
        self.cursor = next;
        Some(next)
    }
}

fn first_leader_candidate(region: &Region, from: usize) -> Option<usize> {
    let n = region.peers().len();
    (0..n).map(|i| (from + i) % n).find(|&i| region.peers()[i].can_lead())
}
