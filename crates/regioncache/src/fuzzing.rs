//! Fuzz entry points and the naive model they are checked against.
//!
//! Compiled under `cfg(fuzzing)`, which cargo-fuzz sets (the target in `fuzz/fuzz_targets` is a
//! one-line call into this module), and under `cfg(test)`, where proptest drives the same check.
//! Every function here panics with a description of the first divergence it finds. This module
//! is not part of the crate's API.
//!
//! [`cache_ops`] decodes a sequence of operations from bytes: inserting arbitrary (possibly
//! garbage) regions given as protobuf messages, scans answered with arbitrary region lists,
//! invalidations, `NotLeader` updates, send failures, look-ups and store updates. Each is applied
//! to a [`RegionCache`] and to [`Model`], a plain list of regions with the same rules written the
//! obvious way. After every step the cache's invariants must hold (no two regions overlap) and
//! both must hold the same regions, leaders and stores.

use bytes::Bytes;
use kvfeed_proto::metapb;
use kvfeed_span::{EncodedKey, Span, cmp_end};
use std::sync::Arc;

use crate::cache::{LeaderUpdate, RegionCache, SendFail};
use crate::convert;
use crate::meta::{Peer, Region, RegionVerId, Store, StoreState};
use crate::source;

/// The keys regions are cut at: index 0 is the empty key, then single bytes.
pub const KEYS: [&[u8]; 9] = [b"", b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"];

/// Bytes consumed per operation.
const OP_LEN: usize = 14;

/// Applies the operations encoded in `data` to a cache and to the model, checking them after
/// every step.
pub fn cache_ops(data: &[u8]) {
    let mut cache = RegionCache::new();
    let mut model = Model::default();
    for (step, op) in data.chunks(OP_LEN).enumerate() {
        let mut op = op.to_vec();
        op.resize(OP_LEN, 0);
        apply(&mut cache, &mut model, &op);
        if let Err(violation) = cache.check_invariants() {
            panic!("step {step} ({op:?}): {violation}");
        }
        model.check(&cache, step);
    }
}

/// A region as protobuf, from 5 bytes: id, start and end key indices, version (and conf_ver, so
/// same-id reports with one epoch field up and the other down occur), and peers.
fn pb_region(b: &[u8]) -> (metapb::Region, Option<metapb::Peer>) {
    let id = u64::from(b[0] % 6);
    let start = KEYS[usize::from(b[1]) % KEYS.len()];
    let end = KEYS[usize::from(b[2]) % KEYS.len()];
    let version = u64::from(b[3] % 4);
    let conf_ver = 1 + u64::from(b[3] / 4 % 2);
    // Bits of b[4]: peer count (1 to 3, or 0), learner flags, which peer leads (or none).
    let count = usize::from(b[4] % 4);
    let peers: Vec<metapb::Peer> = (0..count as u64)
        .map(|i| metapb::Peer {
            id: id * 10 + i + 1,
            store_id: i + 1,
            role: i32::from(b[4] & (0x10 << i) != 0),
            ..metapb::Peer::default()
        })
        .collect();
    let leader = match (b[4] >> 6) as usize {
        0 => None,
        // A leader outside the peer list: garbage.
        3 => Some(metapb::Peer { id: 99, store_id: 9, ..metapb::Peer::default() }),
        i => peers.get(i - 1).copied(),
    };
    let region = metapb::Region {
        id,
        start_key: Bytes::from_static(start),
        end_key: Bytes::from_static(end),
        region_epoch: (version != 3).then_some(metapb::RegionEpoch { conf_ver, version }),
        peers,
        ..metapb::Region::default()
    };
    (region, leader)
}

fn apply(cache: &mut RegionCache, model: &mut Model, op: &[u8]) {
    match op[0] % 10 {
        0..=2 => {
            let (pb, leader) = pb_region(&op[1..6]);
            if let Ok(region) = convert::region(&pb, leader.as_ref()) {
                let cached = cache.insert(region.clone());
                let modeled = model.insert(region);
                assert_eq!(cached, modeled, "insert");
            }
        }
        3 => {
            // A scan answered with up to three arbitrary regions.
            let span_start = KEYS[usize::from(op[1]) % KEYS.len()];
            let span_end = KEYS[usize::from(op[2]) % KEYS.len()];
            let Ok(span) = Span::from_bytes(span_start, span_end) else { return };
            let n = usize::from(op[3] % 4);
            let items: Vec<_> = (0..n).map(|i| pb_region(&op[4 + i * 2..9 + i * 2])).collect();
            let limit = usize::from(op[13] % 4).max(1);
            if let Ok(regions) = convert::region_list(&items, &span, limit) {
                check_batch(&span, &source::batch(&span, regions.clone(), limit), limit);
                for region in regions {
                    let cached = cache.insert(region.clone());
                    assert_eq!(cached, model.insert(region), "insert from scan");
                }
            }
        }
        4 => {
            let ver = model.ver(op[1], op[2]);
            assert_eq!(cache.invalidate(ver), model.invalidate(ver), "invalidate {ver:?}");
        }
        5 => {
            let ver = model.ver(op[1], op[2]);
            let leader = match op[3] % 5 {
                0 => None,
                4 => Some(Peer::voter(99, 9)),
                i => model.get(ver.id).and_then(|r| r.peers().get(usize::from(i) - 1).copied()),
            };
            let outcome = cache.update_leader(ver, leader);
            model.update_leader(ver, leader, outcome);
        }
        6 => {
            let ver = model.ver(op[1], op[2]);
            let peer = match cache.target(ver) {
                Some(peer) if !op[3].is_multiple_of(4) => peer.id,
                _ => u64::from(op[3]),
            };
            let mark_store = op[4].is_multiple_of(2);
            let outcome =
                if mark_store { cache.on_send_fail(ver, peer) } else { cache.skip_peer(ver, peer) };
            model.send_fail(ver, peer, outcome, mark_store);
        }
        7 => {
            let id = u64::from(op[1] % 4) + 1;
            let address = format!("store-{}", op[2] % 3);
            let state = match op[3] % 4 {
                0 => StoreState::Offline,
                1 => StoreState::Tombstone,
                _ => StoreState::Up,
            };
            let store = Store {
                id,
                address: Arc::from(address.as_str()),
                state,
                version: Arc::from("8.1.0"),
                labels: Vec::new(),
            };
            let displaced = cache.insert_store(store.clone());
            assert_eq!(displaced, model.insert_store(store), "stores displaced");
        }
        8 => {
            let id = u64::from(op[1] % 4) + 1;
            cache.mark_store_stale(id);
            if let Some(entry) = model.stores.iter_mut().find(|(s, _)| s.id == id) {
                entry.1 = true;
            }
        }
        _ => {
            let id = u64::from(op[1] % 6);
            let removed = cache.remove(id).map(|r| r.id());
            let modeled = model.remove(id).map(|r| r.id());
            assert_eq!(removed, modeled, "remove {id}");
        }
    }
}

/// Checks a scan batch: holes and regions together cover the span from its start to the resume
/// key (or its end), holes lie inside the span and touch no region.
fn check_batch(span: &Span, batch: &source::RegionBatch, limit: usize) {
    let mut pieces: Vec<(EncodedKey, EncodedKey)> = batch
        .regions
        .iter()
        .map(|r| (r.start().clone(), r.end().clone()))
        .chain(batch.holes.iter().map(|h| (h.start().clone(), h.end().clone())))
        .collect();
    pieces.sort_by(|a, b| a.0.cmp(&b.0));
    for hole in &batch.holes {
        assert!(hole.is_sub_span(span), "hole {hole:?} outside {span:?}");
        assert!(!batch.regions.iter().any(|r| r.span().overlaps(hole)), "hole {hole:?} covered");
    }
    let goal = batch.resume.clone().unwrap_or_else(|| span.end().clone());
    let mut next = span.start().clone();
    let mut reached_inf = false;
    for (start, end) in pieces {
        if reached_inf || (!goal.is_empty() && next >= goal) {
            break;
        }
        if end.is_empty() || end > next {
            assert!(start <= next, "gap before {start:?} in {batch:?} for {span:?}");
            if end.is_empty() {
                reached_inf = true;
            } else {
                next = end;
            }
        }
    }
    let covered = reached_inf || cmp_end(next.as_bytes(), goal.as_bytes()).is_ge();
    assert!(covered, "{batch:?} leaves {span:?} uncovered from {next:?}");
    if batch.resume.is_some() {
        assert!(batch.regions.len() >= limit, "resume without hitting the limit: {batch:?}");
    }
}

/// The naive model: a list of regions (with their leaders) and of stores.
#[derive(Default)]
pub struct Model {
    regions: Vec<Region>,
    /// Stores with their stale flags.
    stores: Vec<(Store, bool)>,
}

impl Model {
    fn get(&self, id: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.id() == id)
    }

    /// A region version: the cached one of id `a % 6` if `b` is even, else a made-up epoch.
    fn ver(&self, a: u8, b: u8) -> RegionVerId {
        let id = u64::from(a % 6);
        match self.get(id) {
            Some(region) if b.is_multiple_of(2) => region.ver_id(),
            _ => RegionVerId {
                id,
                epoch: crate::RegionEpoch::new(u64::from(b % 4), u64::from(b / 4 % 2)),
            },
        }
    }

    fn insert(&mut self, mut region: Region) -> crate::Insert {
        let victims: Vec<u64> = self
            .regions
            .iter()
            .filter(|r| r.span().overlaps(region.span()) || r.id() == region.id())
            .map(Region::id)
            .collect();
        for r in self.regions.iter().filter(|r| victims.contains(&r.id())) {
            if r.epoch().version > region.epoch().version
                || (r.id() == region.id()
                    && (region.epoch().version < r.epoch().version
                        || region.epoch().conf_ver < r.epoch().conf_ver))
            {
                return crate::Insert::Stale;
            }
        }
        if region.leader().is_none()
            && let Some(old) = self.get(region.id())
            && old.epoch() == region.epoch()
            && let Some(leader) = old.leader()
        {
            let index = region.peers().iter().position(|p| p.id == leader.id);
            region.set_leader_index(index);
        }
        let evicted = victims.iter().filter(|&&id| id != region.id()).count();
        self.regions.retain(|r| !victims.contains(&r.id()));
        self.regions.push(region);
        self.regions.sort_by(|a, b| a.start().cmp(b.start()));
        crate::Insert::Inserted { evicted }
    }

    fn remove(&mut self, id: u64) -> Option<Region> {
        let index = self.regions.iter().position(|r| r.id() == id)?;
        Some(self.regions.remove(index))
    }

    fn invalidate(&mut self, ver: RegionVerId) -> bool {
        match self.get(ver.id) {
            // Removed only if the cached epoch is lower or equal on both fields.
            Some(r)
                if r.epoch().version <= ver.epoch.version
                    && r.epoch().conf_ver <= ver.epoch.conf_ver =>
            {
                self.remove(ver.id).is_some()
            }
            _ => false,
        }
    }

    fn current(&mut self, ver: RegionVerId) -> Option<&mut Region> {
        self.regions.iter_mut().find(|r| r.ver_id() == ver)
    }

    fn update_leader(&mut self, ver: RegionVerId, leader: Option<Peer>, got: LeaderUpdate) {
        let Some(region) = self.current(ver) else {
            assert_eq!(got, LeaderUpdate::Stale, "update_leader of uncached {ver:?}");
            return;
        };
        match leader {
            // Counted as a failure (the model does not track the count): the next peer, or
            // after a full round, removal.
            None => match got {
                LeaderUpdate::Switched => region.set_leader_index(None),
                LeaderUpdate::Invalidated => {
                    self.remove(ver.id);
                }
                _ => panic!("update_leader without a leader: {got:?}"),
            },
            Some(leader) => match region.peers().iter().position(|p| p.id == leader.id) {
                Some(index) if region.peers()[index].can_lead() => {
                    assert_eq!(got, LeaderUpdate::Updated);
                    region.set_leader_index(Some(index));
                }
                _ => {
                    assert_eq!(got, LeaderUpdate::Invalidated);
                    self.remove(ver.id);
                }
            },
        }
    }

    fn send_fail(&mut self, ver: RegionVerId, peer: u64, got: SendFail, mark_store: bool) {
        let Some(region) = self.current(ver) else {
            assert_eq!(got, SendFail::Stale, "send fail of uncached {ver:?}");
            return;
        };
        let failed = region.peers().iter().find(|p| p.id == peer).map(|p| p.store_id);
        match got {
            SendFail::Stale => {
                // The peer was not the one in use (the model does not track the cursor, so it
                // only checks that the leader, if known, is not that peer).
                assert!(region.leader().is_none_or(|l| l.id != peer), "stale send fail on leader");
            }
            SendFail::Switched(next) => {
                assert!(failed.is_some(), "switched away from a non-peer {peer}");
                assert!(next.can_lead() && region.peer(next.id) == Some(&next), "bad {next:?}");
                region.set_leader_index(None);
            }
            SendFail::Invalidated => {
                assert!(failed.is_some(), "invalidated on a non-peer {peer}");
                self.remove(ver.id);
            }
        }
        if mark_store
            && got != SendFail::Stale
            && let Some(store_id) = failed
            && let Some(entry) = self.stores.iter_mut().find(|(s, _)| s.id == store_id)
        {
            entry.1 = true;
        }
    }

    fn insert_store(&mut self, store: Store) -> Vec<u64> {
        self.stores.retain(|(s, _)| s.id != store.id);
        if store.state == StoreState::Tombstone {
            return Vec::new();
        }
        let mut displaced = Vec::new();
        for (s, stale) in &mut self.stores {
            if s.address == store.address {
                *stale = true;
                displaced.push(s.id);
            }
        }
        displaced.sort_unstable();
        self.stores.push((store, false));
        displaced
    }

    /// Checks that the cache holds exactly the model's regions, leaders and stores, and answers
    /// look-ups and targets as the model does.
    fn check(&self, cache: &RegionCache, step: usize) {
        let cached: Vec<&Region> = cache.iter().collect();
        let modeled: Vec<&Region> = self.regions.iter().collect();
        assert_eq!(cached, modeled, "step {step}: cache and model differ");
        for key in KEYS {
            let want = self.regions.iter().find(|r| r.contains_key(key)).map(Region::id);
            assert_eq!(cache.region_at(key).map(Region::id), want, "step {step}: look-up {key:?}");
        }
        for region in &self.regions {
            let target = cache.target(region.ver_id());
            match region.leader() {
                Some(leader) => assert_eq!(target, Some(*leader), "step {step}: target"),
                None => {
                    if let Some(peer) = target {
                        assert!(peer.can_lead() && region.peer(peer.id) == Some(&peer));
                    } else {
                        assert!(!region.peers().iter().any(Peer::can_lead), "step {step}");
                    }
                }
            }
        }
        assert_eq!(cache.store_count(), self.stores.len(), "step {step}: store count");
        for (store, stale) in &self.stores {
            let want = (!stale).then_some(store);
            assert_eq!(cache.store(store.id), want, "step {step}: store {}", store.id);
        }
    }
}
