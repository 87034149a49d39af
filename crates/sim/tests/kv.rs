//! The Tikv lock APIs: resolving an abandoned lock unblocks the resolved ts.

mod common;

use bytes::Bytes;
use common::*;
use kvfeed_proto::kvrpcpb;
use kvfeed_sim::Mutation;
use kvfeed_span::table::record_key;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_resolution_unblocks_resolved_ts() {
    let cluster = manual_cluster(1, vec![]).await;
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    let key = Bytes::from(record_key(5, 1));
    let lock_ts = cluster.abandon_lock(&key, 100).unwrap();
    let _ = feed.next_events().await; // PREWRITE
    cluster.tick_resolved_ts();
    assert_eq!(feed.next().await.resolved_ts.unwrap().ts, lock_ts, "held back by the lock");

    let mut kv = tikv(&cluster, 1).await;
    let max_version = cluster.now_ts();
    let scan = scan_locks(&mut kv, &region, max_version).await;
    assert_eq!(scan.locks.len(), 1);
    assert_eq!((scan.locks[0].lock_version, scan.locks[0].key.clone()), (lock_ts, key.clone()));
    let below = scan_locks(&mut kv, &region, lock_ts - 1).await;
    assert!(below.locks.is_empty());

    // Not expired yet.
    let check = |current_ts| kvrpcpb::CheckTxnStatusRequest {
        context: context(&region),
        primary_key: key.clone(),
        lock_ts,
        caller_start_ts: max_version,
        current_ts,
        rollback_if_not_exist: true,
        verify_is_primary: true,
        ..Default::default()
    };
    let alive = kv.kv_check_txn_status(check(cluster.now_ts())).await.unwrap().into_inner();
    assert_eq!((alive.lock_ttl, alive.action), (100, kvrpcpb::Action::NoAction as i32));
    // After the TTL (TSO physical time): rolled back.
    cluster.advance_tso(1_000);
    let expired = kv.kv_check_txn_status(check(cluster.now_ts())).await.unwrap().into_inner();
    assert_eq!(expired.action, kvrpcpb::Action::TtlExpireRollback as i32);
    assert_eq!((expired.lock_ttl, expired.commit_version), (0, 0));
    // The owner can no longer commit: its primary was rolled back.
    assert!(cluster.commit(lock_ts).is_err());
    let rb = rows(&feed.next_events().await);
    assert_eq!(
        (rb[0].r#type, rb[0].start_ts),
        (kvfeed_proto::cdcpb::event::LogType::Rollback as i32, lock_ts)
    );
    cluster.tick_resolved_ts();
    assert!(feed.next().await.resolved_ts.unwrap().ts > lock_ts, "unblocked");

    // Resolve with a commit: a two-key transaction resolved as committed.
    let k2 = Bytes::from(record_key(5, 2));
    let start = cluster
        .prewrite(&[Mutation::put(key.clone(), "p"), Mutation::put(k2.clone(), "s")], 100)
        .unwrap();
    let _ = feed.next_events().await;
    let commit_ts = cluster.now_ts();
    let resolved = kv
        .kv_resolve_lock(kvrpcpb::ResolveLockRequest {
            context: context(&region),
            start_version: start,
            commit_version: commit_ts,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resolved.error.is_none() && resolved.region_error.is_none());
    let commits = rows(&feed.next_events().await);
    assert_eq!(commits.len(), 2);
    assert!(commits.iter().all(|r| r.commit_ts == commit_ts));
    let status = kv.kv_check_txn_status(check(cluster.now_ts())).await.unwrap().into_inner();
    assert_eq!(status.commit_version, 0, "the first transaction stays rolled back");
    assert_eq!(cluster.committed_rows().len(), 2);

    // A long-running transaction keeps its lock alive with heartbeats.
    let long = cluster.prewrite(&[Mutation::put(Bytes::from(record_key(5, 3)), "l")], 100).unwrap();
    assert_eq!(cluster.txn_heartbeat(long, 600_000), 1);
    cluster.advance_tso(1_000);
    let held = kv
        .kv_check_txn_status(kvrpcpb::CheckTxnStatusRequest {
            context: context(&region),
            primary_key: Bytes::from(record_key(5, 3)),
            lock_ts: long,
            current_ts: cluster.now_ts(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.lock_ttl, 600_000);

    // A stale context is a region error.
    let (_, right) = cluster.split_region(region.id, &record_key(5, 2)).unwrap();
    let stale = scan_locks(&mut kv, &region, max_version).await;
    assert!(stale.region_error.unwrap().epoch_not_match.is_some());
    let _ = right;
    cluster.shutdown().await;
}

/// KvScan, KvGet and KvBatchGet as TiKV serves them: raw keys, pages of `limit`, the region's
/// end, locks below the read ts per key, a stale epoch and a key outside the region refused,
/// and (the simulator's own rule) a read below the GC safe point refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_answer_as_tikv_does() {
    let cluster = manual_cluster(1, vec![record_key(5, 10)]).await;
    for handle in 0..20 {
        cluster.commit_1pc(&[Mutation::put(record_key(5, handle), format!("v{handle}"))]).unwrap();
    }
    let ts = cluster.now_ts();
    cluster.commit_1pc(&[Mutation::put(record_key(5, 3), "later")]).unwrap();
    let locked_at = cluster.abandon_lock(&record_key(5, 4), 60_000).unwrap();
    let after = cluster.now_ts();
    let left = cluster.region_of_raw(&record_key(5, 0)).unwrap();
    let mut kv = tikv(&cluster, 1).await;
    let scan = |start: Vec<u8>, version: u64, limit: u32| kvrpcpb::ScanRequest {
        context: context(&left),
        start_key: start.into(),
        limit,
        version,
        ..Default::default()
    };
    // A page of 4 at `ts`, then the rest of the region (it ends at handle 10).
    let page = kv.kv_scan(scan(record_key(5, 0), ts, 4)).await.unwrap().into_inner();
    let keys: Vec<Bytes> = page.pairs.iter().map(|p| p.key.clone()).collect();
    assert_eq!(keys, (0..4).map(|h| Bytes::from(record_key(5, h))).collect::<Vec<_>>());
    assert_eq!(page.pairs[3].value, "v3", "the value at ts, not the later one");
    let rest = kv.kv_scan(scan(record_key(5, 4), ts, 100)).await.unwrap().into_inner();
    assert_eq!(rest.pairs.len(), 6, "handles 4..10: the region's end stops the scan");
    // At a ts after the lock's start, the locked key comes as a key error in its place.
    let rest = kv.kv_scan(scan(record_key(5, 4), after, 100)).await.unwrap().into_inner();
    let lock = rest.pairs[0].error.as_ref().and_then(|e| e.locked.as_ref()).expect("locked");
    assert_eq!(lock.lock_version, locked_at);
    assert!(rest.pairs[0].value.is_empty());
    assert_eq!(rest.pairs[1].value, "v5");
    // Get and BatchGet.
    let get = |key: Vec<u8>, version| kvrpcpb::GetRequest {
        context: context(&left),
        key: key.into(),
        version,
        ..Default::default()
    };
    let got = kv.kv_get(get(record_key(5, 3), after)).await.unwrap().into_inner();
    assert_eq!(got.value, "later");
    let missing = kv.kv_get(get(record_key(5, 99), after)).await.unwrap().into_inner();
    assert!(missing.region_error.and_then(|e| e.key_not_in_region).is_some(), "not this region");
    let locked = kv.kv_get(get(record_key(5, 4), after)).await.unwrap().into_inner();
    assert!(locked.error.and_then(|e| e.locked).is_some());
    let batch = kvrpcpb::BatchGetRequest {
        context: context(&left),
        keys: vec![record_key(5, 1).into(), record_key(5, 4).into()],
        version: ts,
        ..Default::default()
    };
    let batch = kv.kv_batch_get(batch).await.unwrap().into_inner();
    assert_eq!(batch.pairs.len(), 2);
    assert_eq!(batch.pairs[1].value, "v4", "the lock started after ts is not seen");
    // A stale epoch, then a read below the GC safe point.
    cluster.split_region(left.id, &record_key(5, 5)).unwrap();
    let stale = kv.kv_scan(scan(record_key(5, 0), ts, 4)).await.unwrap().into_inner();
    assert!(stale.region_error.and_then(|e| e.epoch_not_match).is_some());
    cluster.rollback(locked_at).unwrap();
    cluster.advance_tso(10);
    let safe_point = cluster.run_gc(std::time::Duration::ZERO);
    let fresh = cluster.region_of_raw(&record_key(5, 0)).unwrap();
    let below =
        kvrpcpb::ScanRequest { context: context(&fresh), ..scan(Vec::new(), safe_point - 1, 4) };
    let below = kv.kv_scan(below).await.unwrap().into_inner();
    assert!(below.error.is_some_and(|e| e.abort.contains("GC safe point")));
    assert_eq!(cluster.cdc_stats(1).reads_below_safe_point, 1);
}
