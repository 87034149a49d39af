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
