//! Unit tests of the sans-I/O core: the cache's insert rules and routing, the conversions from
//! PD messages, scan batches, backoff and TSO batch arithmetic. A property test drives
//! [`crate::fuzzing::cache_ops`] with random operation sequences.

use bytes::Bytes;
use kvfeed_proto::{metapb, pdpb};
use kvfeed_span::{EncodedKey, Span};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::cache::{Insert, LeaderUpdate, RegionCache, SendFail};
use crate::error::{Error, RegionListError};
use crate::meta::{InvalidRegion, Peer, PeerRole, Region, RegionEpoch, RegionVerId};
use crate::{convert, fuzzing, source, tso};

/// `[start, end)` over encoded bytes (empty for unbounded).
fn sp(start: &[u8], end: &[u8]) -> Span {
    Span::from_bytes(start, end).unwrap_or_else(|e| panic!("bad test span: {e}"))
}

/// Region `id` over `[start, end)` at `version`, voters on stores 1..=3 (peer ids `id*10+store`),
/// no leader.
fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
    let peers = (1..=3).map(|s| Peer::voter(id * 10 + s, s)).collect();
    Region::new(id, sp(start, end), RegionEpoch::new(version, 1), peers, None).unwrap()
}

fn ids(cache: &RegionCache) -> Vec<u64> {
    cache.iter().map(Region::id).collect()
}

#[test]
fn insert_and_look_up_by_key_and_id() {
    let mut cache = RegionCache::new();
    for r in [region(1, b"", b"b", 1), region(2, b"b", b"d", 1), region(3, b"d", b"", 1)] {
        assert_eq!(cache.insert(r), Insert::Inserted { evicted: 0 });
    }
    assert_eq!(ids(&cache), [1, 2, 3]);
    for (key, id) in [(&b""[..], 1), (b"a", 1), (b"b", 2), (b"c\xff", 2), (b"d", 3), (b"zz", 3)] {
        assert_eq!(cache.region_at(key).map(Region::id), Some(id), "key {key:?}");
    }
    assert_eq!(cache.get(2).map(|r| r.span().clone()), Some(sp(b"b", b"d")));
    assert_eq!(
        cache.regions_in(&sp(b"a", b"d")).iter().map(|r| r.id()).collect::<Vec<_>>(),
        [1, 2]
    );
    cache.check_invariants().unwrap();
}

#[test]
fn look_up_reports_holes() {
    let mut cache = RegionCache::new();
    cache.insert(region(2, b"b", b"d", 1));
    assert_eq!(cache.region_at(b"a"), None);
    assert_eq!(cache.region_at(b"d"), None);
    assert_eq!(cache.region_at(b"c").map(Region::id), Some(2));
}

#[test]
fn newer_epoch_evicts_overlapping_regions() {
    let mut cache = RegionCache::new();
    cache.insert(region(1, b"", b"m", 1));
    cache.insert(region(2, b"m", b"", 1));
    // A merge: region 2 absorbs region 1, at a larger version.
    assert_eq!(cache.insert(region(2, b"", b"", 2)), Insert::Inserted { evicted: 1 });
    assert_eq!(ids(&cache), [2]);
    // A split of region 2 into [-inf, f) (id 2) and [f, +inf) (id 3).
    assert_eq!(cache.insert(region(3, b"f", b"", 3)), Insert::Inserted { evicted: 1 });
    assert_eq!(ids(&cache), [3]);
    assert_eq!(cache.insert(region(2, b"", b"f", 3)), Insert::Inserted { evicted: 0 });
    assert_eq!(ids(&cache), [2, 3]);
    cache.check_invariants().unwrap();
}

#[test]
fn older_epoch_is_refused_and_changes_nothing() {
    let mut cache = RegionCache::new();
    cache.insert(region(2, b"", b"f", 3));
    cache.insert(region(3, b"f", b"", 3));
    // A late report of the pre-split region.
    assert_eq!(cache.insert(region(2, b"", b"", 2)), Insert::Stale);
    // Same region, same version, older conf_ver.
    let mut older_conf = region(3, b"f", b"", 3);
    older_conf = Region::new(
        3,
        older_conf.span().clone(),
        RegionEpoch::new(3, 0),
        older_conf.peers().to_vec(),
        None,
    )
    .unwrap();
    assert_eq!(cache.insert(older_conf), Insert::Stale);
    assert_eq!(ids(&cache), [2, 3]);
    assert_eq!(cache.get(3).unwrap().epoch(), RegionEpoch::new(3, 1));
    cache.check_invariants().unwrap();
}

#[test]
fn same_epoch_reinsert_keeps_the_known_leader() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 1);
    let ver = r.ver_id();
    cache.insert(r.clone());
    assert_eq!(cache.update_leader(ver, Some(Peer::voter(12, 2))), LeaderUpdate::Updated);
    cache.insert(r);
    assert_eq!(cache.target(ver), Some(Peer::voter(12, 2)));
}

#[test]
fn routing_follows_not_leader_and_send_failures() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 5);
    let ver = r.ver_id();
    cache.insert(r);
    // No leader known: the first voter.
    assert_eq!(cache.target(ver), Some(Peer::voter(11, 1)));
    assert_eq!(cache.update_leader(ver, Some(Peer::voter(13, 3))), LeaderUpdate::Updated);
    assert_eq!(cache.target(ver), Some(Peer::voter(13, 3)));
    // NotLeader without a leader: try the next peer.
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Switched);
    assert_eq!(cache.target(ver), Some(Peer::voter(11, 1)));
    // A report about another version changes nothing.
    let other = RegionVerId { id: 1, epoch: RegionEpoch::new(4, 1) };
    assert_eq!(cache.on_send_fail(other, 11), SendFail::Stale);
    assert_eq!(cache.update_leader(other, None), LeaderUpdate::Stale);
    // Learning the leader again resets the failure count (the hint-less NotLeader above counted).
    assert_eq!(cache.update_leader(ver, Some(Peer::voter(11, 1))), LeaderUpdate::Updated);
    // Failures rotate through the peers, then invalidate.
    assert_eq!(cache.on_send_fail(ver, 11), SendFail::Switched(Peer::voter(12, 2)));
    assert_eq!(cache.on_send_fail(ver, 11), SendFail::Stale, "already moved on");
    assert_eq!(cache.on_send_fail(ver, 12), SendFail::Switched(Peer::voter(13, 3)));
    assert_eq!(cache.on_send_fail(ver, 13), SendFail::Invalidated);
    assert_eq!(cache.target(ver), None);
    assert!(cache.is_empty());
    cache.check_invariants().unwrap();
}

#[test]
fn not_leader_without_a_hint_from_every_peer_invalidates() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 1);
    let ver = r.ver_id();
    cache.insert(r);
    assert_eq!(cache.target(ver), Some(Peer::voter(11, 1)));
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Switched);
    assert_eq!(cache.target(ver), Some(Peer::voter(12, 2)));
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Switched);
    assert_eq!(cache.target(ver), Some(Peer::voter(13, 3)));
    // The third peer answers the same: a full round, reload the region.
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Invalidated);
    assert_eq!(cache.target(ver), None);
    assert!(cache.is_empty());
    // Mixed with send failures, still one round.
    let r = region(1, b"", b"", 1);
    cache.insert(r);
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Switched);
    assert_eq!(cache.on_send_fail(ver, 12), SendFail::Switched(Peer::voter(13, 3)));
    assert_eq!(cache.update_leader(ver, None), LeaderUpdate::Invalidated);
    // A single peer that can lead: one hint-less answer is a full round.
    let one = Region::new(2, sp(b"", b""), RegionEpoch::new(1, 1), vec![Peer::voter(21, 1)], None)
        .unwrap();
    let one_ver = one.ver_id();
    cache.insert(one);
    assert_eq!(cache.update_leader(one_ver, None), LeaderUpdate::Invalidated);
    cache.check_invariants().unwrap();
}

fn with_epoch(r: &Region, version: u64, conf_ver: u64) -> Region {
    Region::new(
        r.id(),
        r.span().clone(),
        RegionEpoch::new(version, conf_ver),
        r.peers().to_vec(),
        None,
    )
    .unwrap()
}

#[test]
fn epoch_staleness_is_per_field() {
    let e = RegionEpoch::new(5, 5);
    assert!(RegionEpoch::new(4, 9).is_stale_against(&e));
    assert!(RegionEpoch::new(9, 4).is_stale_against(&e));
    assert!(!RegionEpoch::new(5, 5).is_stale_against(&e));
    assert!(!RegionEpoch::new(6, 5).is_stale_against(&e));
    assert!(RegionEpoch::new(6, 5).covers(&e));
    // Inconsistent epochs are stale against each other; the derived order disagrees.
    assert!(e.is_stale_against(&RegionEpoch::new(6, 4)));
    assert!(RegionEpoch::new(6, 4) > e, "Ord is lexicographic, not staleness");
}

#[test]
fn same_id_epoch_lower_on_either_field_is_refused() {
    let mut cache = RegionCache::new();
    let r = with_epoch(&region(1, b"", b"", 1), 5, 5);
    cache.insert(r.clone());
    // version+1, conf_ver-1: inconsistent; lexicographically newer, but refused.
    assert_eq!(cache.insert(with_epoch(&r, 6, 4)), Insert::Stale);
    // version-1, conf_ver+1: refused.
    assert_eq!(cache.insert(with_epoch(&r, 4, 6)), Insert::Stale);
    assert_eq!(cache.get(1).unwrap().epoch(), RegionEpoch::new(5, 5));
    // Newer on one field, equal on the other: accepted.
    assert_eq!(cache.insert(with_epoch(&r, 5, 6)), Insert::Inserted { evicted: 0 });
    assert_eq!(cache.insert(with_epoch(&r, 6, 6)), Insert::Inserted { evicted: 0 });
    assert_eq!(cache.get(1).unwrap().epoch(), RegionEpoch::new(6, 6));
    // Other ids overlapping still follow the split/merge rule, by version only.
    let split = Region::new(2, sp(b"m", b""), RegionEpoch::new(7, 1), r.peers().to_vec(), None);
    let split = split.unwrap();
    assert_eq!(cache.insert(split), Insert::Inserted { evicted: 1 });
    let older = Region::new(3, sp(b"", b"z"), RegionEpoch::new(6, 99), r.peers().to_vec(), None);
    assert_eq!(cache.insert(older.unwrap()), Insert::Stale, "a lower version never evicts");
    assert_eq!(ids(&cache), [2]);
    cache.check_invariants().unwrap();
}

#[test]
fn invalidate_keeps_a_cached_epoch_newer_on_either_field() {
    let mut cache = RegionCache::new();
    let r = with_epoch(&region(1, b"", b"", 1), 5, 5);
    cache.insert(r.clone());
    // The request named {6, 4}: lexicographically newer than the cached {5, 5}, but the cached
    // conf_ver is newer, so the cache keeps it.
    assert!(!cache.invalidate(RegionVerId { id: 1, epoch: RegionEpoch::new(6, 4) }));
    assert!(!cache.invalidate(RegionVerId { id: 1, epoch: RegionEpoch::new(4, 6) }));
    assert!(cache.get(1).is_some());
    // Equal or newer on both fields: removed.
    assert!(cache.invalidate(RegionVerId { id: 1, epoch: RegionEpoch::new(5, 6) }));
    assert!(cache.is_empty());
}

#[test]
fn leader_outside_the_peers_invalidates() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 1);
    let ver = r.ver_id();
    cache.insert(r);
    assert_eq!(cache.update_leader(ver, Some(Peer::voter(99, 9))), LeaderUpdate::Invalidated);
    assert!(cache.get(1).is_none());
}

#[test]
fn learners_and_witnesses_are_never_targets() {
    let peers = vec![
        Peer { id: 1, store_id: 1, role: PeerRole::Learner, is_witness: false },
        Peer { id: 2, store_id: 2, role: PeerRole::Voter, is_witness: true },
        Peer { id: 3, store_id: 3, role: PeerRole::Voter, is_witness: false },
    ];
    let r = Region::new(7, Span::full(), RegionEpoch::new(1, 1), peers.clone(), None).unwrap();
    let ver = r.ver_id();
    let mut cache = RegionCache::new();
    cache.insert(r);
    assert_eq!(cache.target(ver).map(|p| p.id), Some(3));
    // Only one peer can lead: one failure invalidates.
    assert_eq!(cache.on_send_fail(ver, 3), SendFail::Invalidated);
    let learners_only =
        Region::new(8, Span::full(), RegionEpoch::new(1, 1), peers[..1].to_vec(), None).unwrap();
    let ver = learners_only.ver_id();
    cache.insert(learners_only);
    assert_eq!(cache.target(ver), None);
}

#[test]
fn invalidate_keeps_newer_versions() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 3);
    cache.insert(r.clone());
    let older = RegionVerId { id: 1, epoch: RegionEpoch::new(2, 1) };
    assert!(!cache.invalidate(older));
    assert!(cache.invalidate(r.ver_id()));
    assert!(!cache.invalidate(r.ver_id()));
    cache.check_invariants().unwrap();
}

fn store(id: u64, address: &str, state: crate::StoreState) -> crate::Store {
    crate::Store { id, address: address.into(), state, version: "8.1.0".into(), labels: Vec::new() }
}

#[test]
fn stores_are_keyed_by_id_and_address_moves_mark_the_old_owner_stale() {
    use crate::StoreState::{Tombstone, Up};
    let mut cache = RegionCache::new();
    assert!(cache.insert_store(store(1, "10.0.0.1:20160", Up)).is_empty());
    assert!(cache.insert_store(store(2, "10.0.0.2:20160", Up)).is_empty());
    // Store 3 now serves store 1's old address.
    assert_eq!(cache.insert_store(store(3, "10.0.0.1:20160", Up)), [1]);
    assert_eq!(cache.store(1), None, "store 1 must be reloaded before use");
    assert_eq!(cache.store(3).map(|s| &*s.address), Some("10.0.0.1:20160"));
    // Reloaded: store 1 moved elsewhere.
    assert!(cache.insert_store(store(1, "10.0.0.9:20160", Up)).is_empty());
    assert_eq!(cache.store(1).map(|s| &*s.address), Some("10.0.0.9:20160"));
    // A tombstone removes the store.
    assert!(cache.insert_store(store(2, "10.0.0.2:20160", Tombstone)).is_empty());
    assert_eq!(cache.store(2), None);
    assert_eq!(cache.store_count(), 2);
    cache.check_invariants().unwrap();
}

#[test]
fn send_failure_marks_the_store_stale() {
    let mut cache = RegionCache::new();
    let r = region(1, b"", b"", 1);
    cache.insert(r.clone());
    cache.insert_store(store(1, "a:1", crate::StoreState::Up));
    cache.on_send_fail(r.ver_id(), 11);
    assert_eq!(cache.store(1), None);
}

fn pb_peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer { id, store_id, ..metapb::Peer::default() }
}

fn pb_region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: Bytes::copy_from_slice(start),
        end_key: Bytes::copy_from_slice(end),
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
        peers: vec![pb_peer(id * 10 + 1, 1), pb_peer(id * 10 + 2, 2)],
        ..metapb::Region::default()
    }
}

fn invalid_reason(pb: &metapb::Region, leader: Option<&metapb::Peer>) -> InvalidRegion {
    match convert::region(pb, leader) {
        Err(Error::InvalidRegion { reason, .. }) => reason,
        other => panic!("expected InvalidRegion, got {other:?}"),
    }
}

#[test]
fn garbage_regions_are_typed_errors() {
    let good = pb_region(1, b"a", b"b");
    let leader = pb_peer(12, 2);
    let r = convert::region(&good, Some(&leader)).unwrap();
    assert_eq!(r.leader().map(|p| p.id), Some(12));
    // An empty leader means none.
    assert_eq!(convert::region(&good, Some(&metapb::Peer::default())).unwrap().leader(), None);

    let cases: Vec<(metapb::Region, Option<metapb::Peer>, InvalidRegion)> = vec![
        (metapb::Region { id: 0, ..good.clone() }, None, InvalidRegion::ZeroId),
        (metapb::Region { region_epoch: None, ..good.clone() }, None, InvalidRegion::MissingEpoch),
        (
            metapb::Region { end_key: Bytes::from_static(b"a"), ..good.clone() },
            None,
            InvalidRegion::EmptyRange {
                start: EncodedKey::from_encoded(b"a"),
                end: EncodedKey::from_encoded(b"a"),
            },
        ),
        (metapb::Region { peers: vec![], ..good.clone() }, None, InvalidRegion::NoPeers),
        (
            metapb::Region { peers: vec![pb_peer(0, 1)], ..good.clone() },
            None,
            InvalidRegion::ZeroPeerId { peer_id: 0, store_id: 1 },
        ),
        (
            metapb::Region { peers: vec![pb_peer(5, 1), pb_peer(5, 2)], ..good.clone() },
            None,
            InvalidRegion::DuplicatePeer { peer_id: 5 },
        ),
        (
            metapb::Region {
                peers: vec![metapb::Peer { role: 42, ..pb_peer(5, 1) }],
                ..good.clone()
            },
            None,
            InvalidRegion::UnknownRole { peer_id: 5, role: 42 },
        ),
        (good.clone(), Some(pb_peer(99, 9)), InvalidRegion::LeaderNotInPeers { peer_id: 99 }),
    ];
    for (pb, leader, want) in cases {
        assert_eq!(invalid_reason(&pb, leader.as_ref()), want);
    }
}

#[test]
fn region_lists_must_be_sorted_disjoint_and_in_range() {
    let span = sp(b"b", b"y");
    let list = |regions: Vec<metapb::Region>| -> Vec<convert::RegionWithLeader> {
        regions.into_iter().map(|r| (r, None)).collect()
    };
    let ok = list(vec![pb_region(1, b"", b"c"), pb_region(2, b"c", b"")]);
    assert_eq!(convert::region_list(&ok, &span, 10).unwrap().len(), 2);

    let err = |items: &[convert::RegionWithLeader], limit| match convert::region_list(
        items, &span, limit,
    ) {
        Err(Error::InvalidRegionList(e)) => e,
        other => panic!("expected InvalidRegionList, got {other:?}"),
    };
    let overlap = list(vec![pb_region(1, b"", b"d"), pb_region(2, b"c", b"")]);
    assert_eq!(err(&overlap, 10), RegionListError::Overlap { left: 1, right: 2 });
    let unsorted = list(vec![pb_region(2, b"c", b"d"), pb_region(1, b"b", b"c")]);
    assert_eq!(err(&unsorted, 10), RegionListError::Overlap { left: 2, right: 1 });
    let after_inf = list(vec![pb_region(1, b"b", b""), pb_region(2, b"c", b"d")]);
    assert_eq!(err(&after_inf, 10), RegionListError::Overlap { left: 1, right: 2 });
    let dup = list(vec![pb_region(1, b"b", b"c"), pb_region(1, b"d", b"e")]);
    assert_eq!(err(&dup, 10), RegionListError::DuplicateId { region_id: 1 });
    let outside = list(vec![pb_region(1, b"y", b"z")]);
    assert_eq!(err(&outside, 10), RegionListError::OutOfRange { region_id: 1 });
    assert_eq!(err(&ok, 1), RegionListError::TooMany { got: 2, limit: 1 });
    // A garbage region inside a list is a region error.
    let garbage = list(vec![metapb::Region { peers: vec![], ..pb_region(1, b"b", b"c") }]);
    assert!(matches!(
        convert::region_list(&garbage, &span, 10),
        Err(Error::InvalidRegion { region_id: 1, reason: InvalidRegion::NoPeers })
    ));
}

#[test]
fn scan_responses_accept_both_layouts() {
    let regions = vec![pb_region(1, b"", b"c"), pb_region(2, b"c", b"")];
    let modern = pdpb::ScanRegionsResponse {
        regions: regions
            .iter()
            .map(|r| pdpb::Region {
                region: Some(r.clone()),
                leader: Some(r.peers[1]),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let legacy = pdpb::ScanRegionsResponse {
        region_metas: regions.clone(),
        // One leader short, and an empty one: both mean "no leader".
        leaders: vec![metapb::Peer::default()],
        ..Default::default()
    };
    let leaders = |resp| {
        convert::region_list(&convert::scan_response(resp), &Span::full(), 10)
            .unwrap()
            .iter()
            .map(|r| r.leader().map(|p| p.id))
            .collect::<Vec<_>>()
    };
    assert_eq!(leaders(modern), [Some(12), Some(22)]);
    assert_eq!(leaders(legacy), [None, None]);
}

#[test]
fn stores_convert_with_tiflash_and_unknown_states() {
    let tiflash = metapb::Store {
        id: 4,
        address: "tiflash:3930".into(),
        labels: vec![metapb::StoreLabel { key: "engine".into(), value: "tiflash".into() }],
        ..Default::default()
    };
    let s = convert::store(tiflash).unwrap();
    assert!(s.is_tiflash() && !s.is_usable());
    let up = convert::store(metapb::Store { id: 1, address: "a:1".into(), ..Default::default() });
    assert!(up.unwrap().is_usable());
    assert!(matches!(
        convert::store(metapb::Store { id: 1, state: 9, ..Default::default() }),
        Err(Error::InvalidStore { store_id: 1, .. })
    ));
    assert!(matches!(convert::store(metapb::Store::default()), Err(Error::InvalidStore { .. })));
}

#[test]
fn member_urls_lose_their_scheme() {
    assert_eq!(convert::strip_scheme("http://127.0.0.1:2379"), "127.0.0.1:2379");
    assert_eq!(convert::strip_scheme("https://pd-0.pd:2379/"), "pd-0.pd:2379");
    assert_eq!(convert::strip_scheme(" 10.0.0.1:2379 "), "10.0.0.1:2379");
}

#[test]
fn batches_report_holes_and_where_to_resume() {
    let span = sp(b"b", b"x");
    let r = |id, s: &[u8], e: &[u8]| region(id, s, e, 1);
    // Covered, with a hole in the middle and at the end; the limit was not reached.
    let b = source::batch(&span, vec![r(1, b"a", b"c"), r(2, b"d", b"f")], 10);
    assert_eq!(b.holes, [sp(b"c", b"d"), sp(b"f", b"x")]);
    assert_eq!(b.resume, None);
    // The limit was reached before the end: resume there, no trailing hole.
    let b = source::batch(&span, vec![r(1, b"", b"c"), r(2, b"c", b"f")], 2);
    assert!(b.holes.is_empty());
    assert_eq!(b.resume, Some(EncodedKey::from_encoded(b"f")));
    // The limit was reached exactly at the end: done.
    let b = source::batch(&span, vec![r(1, b"", b"c"), r(2, b"c", b"")], 2);
    assert_eq!((b.holes.len(), b.resume), (0, None));
    // A hole at the start, and nothing at all.
    let b = source::batch(&span, vec![r(1, b"c", b"")], 5);
    assert_eq!(b.holes, [sp(b"b", b"c")]);
    let b = source::batch(&span, vec![], 5);
    assert_eq!(b.holes, core::slice::from_ref(&span));
}

#[test]
fn tso_batches_end_at_the_largest_timestamp() {
    let resp = |count, physical, logical| pdpb::TsoResponse {
        count,
        timestamp: Some(pdpb::Timestamp { physical, logical, suffix_bits: 0 }),
        ..Default::default()
    };
    assert_eq!(tso::first_of_batch(&resp(3, 5, 10), 3).unwrap(), (5 << 18) + 8);
    assert_eq!(tso::first_of_batch(&resp(1, 0, 1), 1).unwrap(), 1);
    for (bad, count) in [
        (resp(3, 5, 10), 2),      // count differs from the request
        (resp(3, 5, 2), 3),       // logical too small for the batch
        (resp(1, -1, 1), 1),      // negative physical
        (resp(1, 5, 1 << 18), 1), // logical overflows its bits
        (resp(1, 1 << 46, 1), 1), // physical overflows its bits
        (pdpb::TsoResponse { count: 1, ..Default::default() }, 1), // no timestamp
    ] {
        assert!(
            matches!(tso::first_of_batch(&bad, count), Err(Error::InvalidResponse { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn fuzz_cache_ops_regressions() {
    // Inserts, a scan, leader updates, failures and stores on overlapping small key sets.
    fuzzing::cache_ops(&[
        0, 1, 0, 0, 1, 0x43, 0, 0, 0, 0, 0, 0, 0, 0, // insert region 1 [-inf,+inf) v1
        1, 2, 3, 0, 2, 0x83, 0, 0, 0, 0, 0, 0, 0, 0, // insert region 2 [c, +inf) v2
        3, 1, 0, 2, 3, 1, 3, 2, 3, 0, 0, 0, 0, 3, // a scan of [a, +inf)
        5, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NotLeader naming peer 2 of region 2
        6, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // send fail on region 2's target
        7, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // store 2 at store-0
        7, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // store 3 at store-0: store 2 stale
        4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // invalidate region 2
    ]);
    // Per-field epoch staleness and hint-less NotLeader rounds, on a fresh cache.
    fuzzing::cache_ops(&[
        0, 1, 0, 0, 5, 0x03, 0, 0, 0, 0, 0, 0, 0,
        0, // region 1 [-inf,+inf) {v1, conf 2}, 3 voters
        0, 1, 0, 0, 2, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, // region 1 {v2, conf 1}: refused
        4, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // invalidate region 1 at {v1, conf 0}: kept
        5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NotLeader, no hint
        5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NotLeader, no hint
        5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NotLeader, no hint: a full round, removed
    ]);
}

proptest! {
    #![proptest_config(Config {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x6b76_6665_6564),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    })]

    /// Random operation sequences keep the cache equal to the model, without overlaps.
    #[test]
    fn cache_ops_match_the_model(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::cache_ops(&data);
    }
}
