//! The lock-resolution RPCs through real gRPC against the simulator (`kvfeed-sim`): targets come
//! from regioncache's `PdRegionSource` over the simulator's PD, calls go over the store's pooled
//! connection. No sleeps: the simulator's TSO is advanced by hand, every wait is on a response.

use bytes::Bytes;
use kvfeed_regioncache::{PdClient, PdConfig, PdRegionSource, RegionEpoch, RegionVerId};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
use kvfeed_span::EncodedKey;
use kvfeed_span::table::record_key;
use kvfeed_transport::{
    CheckTxnStatus, Events, KeyError, KvError, LockKind, RegionError, RegionTarget, ResolveLock,
    ScanLock, StoreTarget, Transport, TransportConfig, TransportError, TxnAction, TxnStatus,
};

struct Harness {
    cluster: Cluster,
    transport: Transport,
    _events: Events,
    source: PdRegionSource,
}

async fn harness(stores: usize) -> Harness {
    let cluster = Cluster::start(ClusterConfig {
        stores,
        replicas: stores,
        resolved_ts_interval: None,
        record_commits: false,
        ..ClusterConfig::default()
    })
    .await
    .expect("start the simulator");
    let (transport, events) =
        Transport::new(TransportConfig::default(), cluster.cluster_id()).expect("transport");
    let pd = PdClient::connect(PdConfig::new([cluster.pd_address()])).await.expect("PD");
    Harness { cluster, transport, _events: events, source: PdRegionSource::new(pd) }
}

impl Harness {
    /// The target of the region holding the raw `key`, from the region source.
    async fn target(&self, key: &[u8]) -> RegionTarget {
        let encoded = EncodedKey::encode(key);
        let region = self.source.region_at(encoded.as_bytes()).await.unwrap().expect("a region");
        let ctx = self.source.rpc_context(region.ver_id()).await.unwrap().expect("a leader");
        RegionTarget::from(&ctx)
    }

    async fn locks(&self, target: &RegionTarget) -> Vec<Bytes> {
        let scan = ScanLock { max_ts: u64::MAX, ..ScanLock::default() };
        let locks = self.transport.scan_lock(target, &scan).await.expect("scan");
        locks.into_iter().map(|lock| lock.key).collect()
    }
}

fn key(handle: i64) -> Bytes {
    Bytes::from(record_key(5, handle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_lock_is_scanned_checked_resolved_and_gone() {
    let h = harness(1).await;
    let (primary, secondary) = (key(1), key(2));
    let start_ts = h
        .cluster
        .prewrite(
            &[Mutation::put(primary.clone(), "p"), Mutation::put(secondary.clone(), "s")],
            100,
        )
        .unwrap();
    let target = h.target(&primary).await;

    let scan = ScanLock { max_ts: h.cluster.now_ts(), ..ScanLock::default() };
    let locks = h.transport.scan_lock(&target, &scan).await.unwrap();
    assert_eq!(locks.len(), 2);
    assert_eq!((locks[0].key.clone(), locks[1].key.clone()), (primary.clone(), secondary.clone()));
    for lock in &locks {
        assert_eq!(
            (lock.primary.clone(), lock.start_ts, lock.ttl),
            (primary.clone(), start_ts, 100)
        );
        assert_eq!((lock.kind, lock.use_async_commit), (LockKind::Put, false));
    }
    let below = ScanLock { max_ts: start_ts - 1, ..ScanLock::default() };
    assert!(h.transport.scan_lock(&target, &below).await.unwrap().is_empty());
    let one = ScanLock { max_ts: u64::MAX, limit: 1, start_key: secondary.clone(), ..scan };
    let page = h.transport.scan_lock(&target, &one).await.unwrap();
    assert_eq!(
        page.iter().map(|l| l.key.clone()).collect::<Vec<_>>(),
        core::slice::from_ref(&secondary)
    );

    // The primary: alive within its TTL, rolled back after it.
    let check = |current_ts| CheckTxnStatus {
        primary_key: primary.clone(),
        lock_ts: start_ts,
        current_ts,
        rollback_if_not_exist: true,
        ..CheckTxnStatus::default()
    };
    let status = h.transport.check_txn_status(&target, &check(h.cluster.now_ts())).await.unwrap();
    let TxnStatus::Locked { ttl: 100, action: TxnAction::NoAction, lock: Some(lock) } = status
    else {
        panic!("expected a live lock, got {status:?}");
    };
    assert_eq!(lock.key, primary);
    h.cluster.advance_tso(1_000);
    let status = h.transport.check_txn_status(&target, &check(h.cluster.now_ts())).await.unwrap();
    assert_eq!(status, TxnStatus::RolledBack { action: TxnAction::TtlExpireRollback });
    assert_eq!(
        h.locks(&target).await,
        core::slice::from_ref(&secondary),
        "the secondary is left behind"
    );

    // Resolving rolls the secondary back: no lock is left.
    let resolve = ResolveLock { start_ts, commit_ts: None, keys: Vec::new() };
    h.transport.resolve_lock(&target, &resolve).await.unwrap();
    assert!(h.locks(&target).await.is_empty());
    assert!(h.cluster.commit(start_ts).is_err(), "the transaction can no longer commit");

    // One channel of the store's pool carried every call: no connection per call, no second
    // connection cache.
    let stats = h.transport.store_stats(target.store.store_id).await.expect("a known store");
    assert_eq!(stats.connections, 1);
    assert_eq!(h.transport.stores(), [target.store.store_id]);
    h.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_primary_commits_its_secondaries() {
    let h = harness(1).await;
    let (primary, secondary) = (key(3), key(4));
    let start_ts = h
        .cluster
        .prewrite(
            &[Mutation::put(primary.clone(), "p"), Mutation::put(secondary.clone(), "s")],
            100,
        )
        .unwrap();
    let target = h.target(&primary).await;
    // The owner committed its primary and vanished.
    let commit_ts = h.cluster.now_ts();
    let primary_only =
        ResolveLock { start_ts, commit_ts: Some(commit_ts), keys: vec![primary.clone()] };
    h.transport.resolve_lock(&target, &primary_only).await.unwrap();
    assert_eq!(h.locks(&target).await, core::slice::from_ref(&secondary));

    let check = CheckTxnStatus {
        primary_key: primary.clone(),
        lock_ts: start_ts,
        current_ts: h.cluster.now_ts(),
        ..CheckTxnStatus::default()
    };
    let status = h.transport.check_txn_status(&target, &check).await.unwrap();
    assert_eq!(status, TxnStatus::Committed { commit_ts });

    let secondaries = core::slice::from_ref(&secondary);
    let state = h.transport.check_secondary_locks(&target, start_ts, secondaries).await.unwrap();
    assert_eq!((state.locks.len(), state.commit_ts), (1, None));
    assert_eq!(state.locks[0].key, secondary);

    let resolve = ResolveLock { start_ts, commit_ts: Some(commit_ts), keys: Vec::new() };
    h.transport.resolve_lock(&target, &resolve).await.unwrap();
    assert!(h.locks(&target).await.is_empty());
    let state = h.transport.check_secondary_locks(&target, start_ts, secondaries).await.unwrap();
    assert_eq!((state.locks.len(), state.commit_ts), (0, Some(commit_ts)));

    // An invalid commit ts is TiKV's key error.
    let late = h.cluster.prewrite(&[Mutation::put(key(5), "x")], 100).unwrap();
    let bad = ResolveLock { start_ts: late, commit_ts: Some(late - 1), keys: Vec::new() };
    let error = h.transport.resolve_lock(&target, &bad).await.unwrap_err();
    let KvError::Key { method: "KvResolveLock", error: key_error, .. } = &error else {
        panic!("expected a key error, got {error}");
    };
    assert!(matches!(**key_error, KeyError::Abort(_)), "{error}");
    h.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_errors_are_typed() {
    let h = harness(3).await;
    let k = key(7);
    let lock_ts = h.cluster.abandon_lock(&k, 100).unwrap();
    let target = h.target(&k).await;
    let scan = ScanLock { max_ts: u64::MAX, ..ScanLock::default() };

    // A stale epoch.
    let epoch = target.region.epoch;
    let stale = RegionTarget {
        region: RegionVerId {
            id: target.region.id,
            epoch: RegionEpoch::new(epoch.version + 1, epoch.conf_ver),
        },
        ..target.clone()
    };
    let error = h.transport.scan_lock(&stale, &scan).await.unwrap_err();
    let KvError::Region {
        error: RegionError::EpochNotMatch { current_regions }, region_id, ..
    } = error
    else {
        panic!("expected EpochNotMatch, got {error}");
    };
    assert_eq!(region_id, target.region.id);
    assert_eq!(current_regions.len(), 1);
    assert_eq!(current_regions[0].ver_id(), target.region);

    // The region split: the old version is refused, the new one serves the lock.
    let region = h.cluster.region_of_raw(&k).expect("a region");
    h.cluster.split_region(region.id, &key(6)).expect("split");
    let error = h.transport.scan_lock(&target, &scan).await.unwrap_err();
    assert!(
        matches!(&error, KvError::Region { error: RegionError::EpochNotMatch { .. }, .. }),
        "{error}"
    );
    h.source.invalidate(target.region);
    let fresh = h.target(&k).await;
    assert_ne!(fresh.region, target.region);
    let locks = h.transport.scan_lock(&fresh, &scan).await.unwrap();
    assert_eq!(
        locks.iter().map(|l| (l.key.clone(), l.start_ts)).collect::<Vec<_>>(),
        [(k.clone(), lock_ts)]
    );

    // A follower answers NotLeader, naming the leader.
    let region = h.cluster.region_of_raw(&k).expect("a region");
    let follower = region.peers.iter().find(|p| p.store_id != region.leader_store).unwrap();
    let leader = region.peers.iter().find(|p| p.store_id == region.leader_store).unwrap();
    let wrong = RegionTarget {
        peer: kvfeed_regioncache::Peer::voter(follower.id, follower.store_id),
        store: StoreTarget {
            store_id: follower.store_id,
            address: h.cluster.store_address(follower.store_id).unwrap(),
        },
        ..fresh.clone()
    };
    let error = h.transport.scan_lock(&wrong, &scan).await.unwrap_err();
    let KvError::Region { error: RegionError::NotLeader { leader: Some(named) }, .. } = error
    else {
        panic!("expected NotLeader, got {error}");
    };
    assert_eq!((named.id, named.store_id), (leader.id, leader.store_id));

    // A store nobody listens on is a gRPC failure (UNAVAILABLE); a bad address the transport's.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = dead.local_addr().unwrap().to_string();
    drop(dead);
    let unreachable =
        RegionTarget { store: StoreTarget { store_id: 99, address }, ..fresh.clone() };
    let error = h.transport.scan_lock(&unreachable, &scan).await.unwrap_err();
    assert!(matches!(error, KvError::Grpc { store_id: 99, code: 14, .. }), "{error}");
    let garbage = RegionTarget {
        store: StoreTarget { store_id: 98, address: "not an address\n".to_owned() },
        ..fresh.clone()
    };
    let error = h.transport.scan_lock(&garbage, &scan).await.unwrap_err();
    assert!(
        matches!(error, KvError::Transport(TransportError::InvalidAddress { store_id: 98, .. })),
        "{error}"
    );
    h.cluster.shutdown().await;
}
