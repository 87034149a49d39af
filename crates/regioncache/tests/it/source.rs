//! The region source: loading ranges in batches, de-duplication, routing, invalidation and the
//! store cache, through the PD client.

use bytes::Bytes;
use kvfeed_proto::{metapb, pdpb};
use kvfeed_regioncache::{Error, PdRegionSource, Peer, RegionListError, RegionVerId, RpcContext};
use kvfeed_sim::scripted::{ScriptedPd, region, split_regions, store};
use kvfeed_span::{EncodedKey, Span};

use crate::{CLUSTER, connect};

fn key(k: &[u8]) -> EncodedKey {
    EncodedKey::from_encoded(k)
}

fn span(start: &[u8], end: &[u8]) -> Span {
    Span::from_bytes(start, end).unwrap()
}

async fn source(fake: &ScriptedPd) -> PdRegionSource {
    PdRegionSource::new(connect(fake).await)
}

/// The ids of the cached regions, in key order, after checking the cache's invariants.
fn cached(src: &PdRegionSource) -> Vec<u64> {
    src.with_cache(|c| {
        c.check_invariants().unwrap();
        c.iter().map(|r| r.id()).collect()
    })
}

async fn context(src: &PdRegionSource, ver: RegionVerId) -> RpcContext {
    src.rpc_context(ver).await.unwrap().expect("a usable peer")
}

#[tokio::test]
async fn loads_in_batches_reporting_holes() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let splits: Vec<_> = [b"b", b"d", b"f", b"h"].iter().map(|k| key(*k)).collect();
    let mut regions = split_regions(&splits, &[1]);
    regions.remove(2); // [d, f): a hole, PD has not heard of that region yet
    fake.set_regions(regions);
    let src = source(&fake).await;

    let first = src.load_regions(&span(b"a", b""), 2).await.unwrap();
    assert_eq!(first.regions.iter().map(|r| r.id()).collect::<Vec<_>>(), [1, 2]);
    assert!(first.holes.is_empty());
    assert_eq!(first.resume, Some(key(b"d")));

    let rest = src.load_regions(&span(b"d", b""), 2).await.unwrap();
    assert_eq!(rest.regions.iter().map(|r| r.id()).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(rest.holes, [span(b"d", b"f")]);
    assert_eq!(rest.resume, None);
    assert_eq!(cached(&src), [1, 2, 4, 5]);

    // A limit of 0 means the default.
    let all = src.load_regions(&Span::full(), 0).await.unwrap();
    assert_eq!((all.regions.len(), all.resume), (4, None));
}

#[tokio::test]
async fn identical_loads_in_flight_share_one_call() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[key(b"m")], &[1]));
    fake.put_store(store(1, "127.0.0.1:20160"));
    let src = source(&fake).await;
    let whole = Span::full();
    let (a, b) = tokio::join!(src.load_regions(&whole, 10), src.load_regions(&whole, 10));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(fake.calls(0).scan_regions, 1);
    // A different limit is a different load.
    src.load_regions(&whole, 5).await.unwrap();
    assert_eq!(fake.calls(0).scan_regions, 2);

    let (a, b) = tokio::join!(src.store(1), src.store(1));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(fake.calls(0).get_store, 1);

    src.invalidate(src.with_cache(|c| c.get(2).unwrap().ver_id()));
    let (a, b) = tokio::join!(src.region_by_id(2), src.region_by_id(2));
    assert_eq!(a.unwrap().unwrap().id(), 2);
    assert_eq!(b.unwrap().unwrap().id(), 2);
    assert_eq!(fake.calls(0).get_region_by_id, 1);
}

#[tokio::test]
async fn region_split_seen_after_invalidation() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    for s in 1..=3 {
        fake.put_store(store(s, &format!("127.0.0.1:{}", 20160 + s)));
    }
    fake.set_regions([region(1, b"", b"", 1, &[1, 2, 3])]);
    let src = source(&fake).await;
    let before = src.load_regions(&Span::full(), 0).await.unwrap();
    let old = before.regions[0].ver_id();
    assert_eq!(&*context(&src, old).await.address, "127.0.0.1:20161");

    // Region 1 splits at "m"; the cache does not know yet and still routes the old version.
    fake.set_regions([region(1, b"", b"m", 2, &[1, 2, 3]), region(2, b"m", b"", 2, &[2, 3])]);
    assert!(src.rpc_context(old).await.unwrap().is_some());
    // TiKV answers EpochNotMatch: the old version is gone, the caller re-divides.
    src.invalidate(old);
    assert_eq!(src.rpc_context(old).await.unwrap(), None);
    let after = src.load_regions(&Span::full(), 0).await.unwrap();
    let vers: Vec<RegionVerId> = after.regions.iter().map(|r| r.ver_id()).collect();
    assert_eq!(vers.iter().map(|v| (v.id, v.epoch.version)).collect::<Vec<_>>(), [(1, 2), (2, 2)]);
    assert_eq!(cached(&src), [1, 2]);
    assert_eq!(&*context(&src, vers[0]).await.address, "127.0.0.1:20161");
    assert_eq!(&*context(&src, vers[1]).await.address, "127.0.0.1:20162");
    // A late, stale report of the old region does not undo the split.
    assert!(src.rpc_context(old).await.unwrap().is_none());
}

#[tokio::test]
async fn stale_regions_from_a_lagging_pd_are_replaced_by_cached_ones() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    for s in 1..=3 {
        fake.put_store(store(s, &format!("127.0.0.1:{}", 20160 + s)));
    }
    fake.set_regions([region(1, b"", b"m", 2, &[1, 2, 3]), region(2, b"m", b"", 2, &[2, 3])]);
    let src = source(&fake).await;
    src.load_regions(&Span::full(), 0).await.unwrap();
    assert_eq!(cached(&src), [1, 2]);

    // A PD leader lagging after a failover reports the pre-split region again.
    fake.set_regions([region(1, b"", b"", 1, &[1, 2, 3])]);
    let batch = src.load_regions(&Span::full(), 0).await.unwrap();
    let vers: Vec<_> = batch.regions.iter().map(|r| (r.id(), r.epoch().version)).collect();
    assert_eq!(vers, [(1, 2), (2, 2)], "the cached newer regions, not PD's stale one");
    assert!(batch.holes.is_empty());
    assert_eq!(batch.resume, None);
    assert_eq!(cached(&src), [1, 2]);
    // Every region answered is routable: no endless re-division.
    for region in &batch.regions {
        assert!(src.rpc_context(region.ver_id()).await.unwrap().is_some(), "{region:?}");
    }
    // Only part of the range is cached: the rest is a hole, to load again later.
    src.invalidate(src.with_cache(|c| c.get(1).unwrap().ver_id()));
    let batch = src.load_regions(&span(b"a", b""), 0).await.unwrap();
    assert_eq!(batch.regions.iter().map(|r| r.id()).collect::<Vec<_>>(), [2]);
    assert_eq!(batch.holes, [span(b"a", b"m")]);
    assert_eq!(batch.resume, None);
    // The limit still decides on PD's answer: the stale region filled it, so resume after the
    // cached region that replaced it.
    let batch = src.load_regions(&span(b"a", b""), 1).await.unwrap();
    assert_eq!(batch.holes, [span(b"a", b"m")]);
    assert_eq!(batch.resume, None, "region 2 reaches +inf");
    // A point look-up of a key PD answers stale gets the cached region.
    let at = src.region_at(b"x").await.unwrap().unwrap();
    assert_eq!((at.id(), at.epoch().version), (2, 2));
    assert_eq!(cached(&src), [2]);
}

#[tokio::test]
async fn garbage_region_lists_leave_the_cache_consistent() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[key(b"f"), key(b"p")], &[1]));
    let src = source(&fake).await;
    src.load_regions(&Span::full(), 0).await.unwrap();
    assert_eq!(cached(&src), [1, 2, 3]);

    let mut no_peers = region(9, b"a", b"b", 5, &[1]);
    no_peers.region.as_mut().unwrap().peers.clear();
    let mut no_epoch = region(9, b"a", b"b", 5, &[1]);
    no_epoch.region.as_mut().unwrap().region_epoch = None;
    let cases: Vec<(Vec<pdpb::Region>, &str)> = vec![
        (vec![region(8, b"", b"k", 5, &[1]), region(9, b"c", b"", 5, &[1])], "overlap"),
        (vec![region(9, b"k", b"", 5, &[1]), region(8, b"", b"k", 5, &[1])], "unsorted"),
        (vec![region(8, b"", b"k", 5, &[1]), region(8, b"k", b"", 5, &[1])], "duplicate"),
        (vec![region(9, b"k", b"c", 5, &[1])], "inverted range"),
        (vec![no_peers], "no peers"),
        (vec![no_epoch], "no epoch"),
        (vec![region(0, b"", b"", 5, &[1])], "zero id"),
    ];
    for (list, what) in cases {
        fake.with(|s| s.scan_override = Some(list));
        let error = src.load_regions(&Span::full(), 0).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidRegionList(_) | Error::InvalidRegion { .. }),
            "{what}: {error:?}"
        );
        assert_eq!(cached(&src), [1, 2, 3], "{what}: cache changed");
    }
    fake.with(|s| s.scan_override = Some(vec![region(8, b"x", b"", 5, &[1])]));
    let error = src.load_regions(&span(b"a", b"b"), 0).await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidRegionList(RegionListError::OutOfRange { region_id: 8 })),
        "{error:?}"
    );
    fake.with(|s| s.scan_override = None);
    assert_eq!(src.load_regions(&Span::full(), 0).await.unwrap().regions.len(), 3);
}

#[tokio::test]
async fn store_address_reused_by_another_store_id() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let (addr_a, addr_b) = ("127.0.0.1:20161", "127.0.0.1:20162");
    fake.put_store(store(1, addr_a));
    fake.put_store(store(2, addr_b));
    fake.set_regions([region(1, b"", b"", 1, &[1, 2])]);
    let src = source(&fake).await;
    let old = src.load_regions(&Span::full(), 0).await.unwrap().regions[0].ver_id();
    let ctx = context(&src, old).await;
    assert_eq!((ctx.peer.store_id, &*ctx.address), (1, addr_a));

    // Store 1 is removed; a new store 3 comes up at its address and takes over its peer.
    fake.put_store(metapb::Store {
        state: metapb::StoreState::Tombstone as i32,
        ..store(1, addr_a)
    });
    fake.put_store(store(3, addr_a));
    let mut moved = region(1, b"", b"", 1, &[3, 2]);
    moved.region.as_mut().unwrap().region_epoch =
        Some(metapb::RegionEpoch { conf_ver: 2, version: 1 });
    fake.set_regions([moved]);
    src.invalidate(old); // TiKV answered EpochNotMatch (conf change)
    let new = src.load_regions(&Span::full(), 0).await.unwrap().regions[0].ver_id();
    assert_eq!(new.epoch.conf_ver, 2);
    let ctx = context(&src, new).await;
    assert_eq!((ctx.peer.store_id, &*ctx.address), (3, addr_a));

    // Store 1 no longer owns that address in the cache: it must be reloaded, and PD says it is
    // gone.
    assert_eq!(src.with_cache(|c| c.store(1).cloned()), None);
    assert!(matches!(src.store(1).await, Err(Error::StoreTombstone { store_id: 1 })));
    src.with_cache(|c| {
        assert_eq!(c.store(3).map(|s| &*s.address), Some(addr_a));
        assert_eq!(c.store_count(), 1);
    });
}

#[tokio::test]
async fn routing_follows_not_leader_and_send_failures() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    for s in 1..=3 {
        fake.put_store(store(s, &format!("127.0.0.1:{}", 20160 + s)));
    }
    fake.set_regions([region(1, b"", b"", 1, &[1, 2, 3])]);
    let src = source(&fake).await;
    let ver = src.load_regions(&Span::full(), 0).await.unwrap().regions[0].ver_id();
    assert_eq!(context(&src, ver).await.peer.store_id, 1);

    // NotLeader naming the peer on store 2.
    src.on_not_leader(ver, Some(Peer::voter(1002, 2)));
    let ctx = context(&src, ver).await;
    assert_eq!((ctx.peer.id, &*ctx.address), (1002, "127.0.0.1:20162"));

    // Store 2 is unreachable: go to store 3, and reload store 2's address before its next use.
    src.on_send_fail(&ctx);
    assert_eq!(context(&src, ver).await.peer.store_id, 3);
    assert!(src.with_cache(|c| c.store(2).is_none()));

    // NotLeader without a leader: the next peer.
    src.on_not_leader(ver, None);
    assert_eq!(context(&src, ver).await.peer.store_id, 1);

    // Every peer failed in turn: the region is dropped and the caller must re-divide.
    for _ in 0..3 {
        if let Some(ctx) = src.rpc_context(ver).await.unwrap() {
            src.on_send_fail(&ctx);
        }
    }
    assert_eq!(src.rpc_context(ver).await.unwrap(), None);
    assert_eq!(cached(&src), Vec::<u64>::new());
}

#[tokio::test]
async fn unusable_stores_are_skipped() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.put_store(metapb::Store {
        state: metapb::StoreState::Tombstone as i32,
        ..store(1, "127.0.0.1:20161")
    });
    fake.put_store(metapb::Store {
        labels: vec![metapb::StoreLabel { key: "engine".into(), value: "tiflash".into() }],
        ..store(4, "127.0.0.1:20164")
    });
    fake.put_store(store(2, "127.0.0.1:20162"));
    // Store 9 is unknown to PD.
    fake.set_regions([region(1, b"", b"m", 1, &[1, 4, 9, 2]), region(2, b"m", b"", 1, &[1, 4, 9])]);
    let src = source(&fake).await;
    let batch = src.load_regions(&Span::full(), 0).await.unwrap();
    let (left, right) = (batch.regions[0].ver_id(), batch.regions[1].ver_id());
    assert_eq!(context(&src, left).await.peer.store_id, 2);
    assert_eq!(src.rpc_context(right).await.unwrap(), None, "no usable peer");
    assert_eq!(cached(&src), [1], "the unusable region was dropped for a reload");
}

#[tokio::test]
async fn look_ups_fill_the_cache() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[key(b"m")], &[1]));
    let src = source(&fake).await;
    assert_eq!(src.region_at(b"z").await.unwrap().map(|r| r.id()), Some(2));
    assert_eq!(src.region_at(b"z").await.unwrap().map(|r| r.id()), Some(2));
    assert_eq!(fake.calls(0).get_region, 1, "the second look-up hit the cache");
    assert_eq!(src.region_by_id(1).await.unwrap().map(|r| r.id()), Some(1));
    assert_eq!(src.region_by_id(5).await.unwrap(), None);
    assert_eq!(cached(&src), [1, 2]);
    // A region whose bytes are shared with the request is still validated.
    fake.with_data(|d| {
        let r = d.regions.get_mut(&Bytes::from_static(b"m")).unwrap();
        r.region.as_mut().unwrap().peers.clear();
    });
    src.invalidate(src.with_cache(|c| c.get(2).unwrap().ver_id()));
    assert!(matches!(src.region_at(b"z").await, Err(Error::InvalidRegion { region_id: 2, .. })));
}

/// Issue 18 item 10: the regions of a span no subscription needs any more are forgotten; those
/// `keep` wants stay.
#[tokio::test]
async fn regions_of_an_unwanted_span_are_forgotten() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let splits: Vec<_> = [b"b", b"d", b"f", b"h"].iter().map(|k| key(*k)).collect();
    fake.set_regions(split_regions(&splits, &[1]));
    let src = source(&fake).await;
    src.load_regions(&Span::full(), 0).await.unwrap();
    assert_eq!(cached(&src), [1, 2, 3, 4, 5]);
    // [c, g) is unsubscribed; another subscription still covers [e, f).
    let still = span(b"e", b"f");
    let forgotten =
        src.forget_regions_in(&span(b"c", b"g"), |region| still.intersect(region).is_ok());
    assert_eq!(forgotten, 2);
    assert_eq!(cached(&src), [1, 3, 5], "[d, f) holds [e, f) and stays");
}
