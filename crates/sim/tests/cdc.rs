//! The ChangeData server through raw tonic clients: scan, live rows, resolved ts, errors.

mod common;

use bytes::Bytes;
use common::*;
use kvfeed_proto::cdcpb::{ChangeDataRequest, event};
use kvfeed_sim::Mutation;
use kvfeed_span::table::record_key;

fn key(h: i64) -> Bytes {
    Bytes::from(record_key(100, h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_then_initialized_then_live_rows() {
    let cluster = manual_cluster(1, vec![]).await;
    let (_, c1) = cluster.commit_2pc(&[Mutation::put(key(1), "a")]).unwrap();
    let checkpoint = cluster.now_ts();
    let (_, c2) =
        cluster.commit_2pc(&[Mutation::put(key(2), "b"), Mutation::put(key(1), "a2")]).unwrap();
    let locked = cluster.prewrite(&[Mutation::put(key(3), "c")], 60_000).unwrap();
    // Outside the requested range: never delivered.
    cluster.commit_1pc(&[Mutation::put(record_key(200, 1), "x")]).unwrap();

    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    let mut req = register(&cluster, &region, 1, checkpoint);
    let span = kvfeed_span::table::table_span(100);
    req.start_key = Bytes::copy_from_slice(span.start().as_bytes());
    req.end_key = Bytes::copy_from_slice(span.end().as_bytes());
    feed.send(req).await;
    let events = feed.events_until(is_initialized).await;
    let scanned = rows(&events);
    let types: Vec<i32> = scanned.iter().map(|r| r.r#type).collect();
    let committed = event::LogType::Committed as i32;
    assert_eq!(
        types,
        vec![
            committed,
            committed,
            event::LogType::Prewrite as i32,
            event::LogType::Initialized as i32
        ]
    );
    assert!(
        scanned.iter().all(|r| r.commit_ts == 0 || r.commit_ts == c2),
        "only commits above the checkpoint"
    );
    assert!(c1 < checkpoint);
    assert_eq!(scanned[0].key, key(1));
    assert_eq!(scanned[0].old_value, Bytes::from_static(b"a"), "old value filled");
    assert_eq!((scanned[2].key.clone(), scanned[2].start_ts), (key(3), locked));
    assert!(events.iter().all(|e| e.index == 0 && e.request_id == 1));

    // Live rows after INITIALIZED: COMMIT of the scanned lock, PREWRITE/ROLLBACK, 1PC.
    let c3 = cluster.commit(locked).unwrap();
    let live = rows(&feed.next_events().await);
    assert_eq!(live.len(), 1);
    assert_eq!(
        (live[0].r#type, live[0].commit_ts, live[0].start_ts),
        (event::LogType::Commit as i32, c3, locked)
    );
    let s4 = cluster.prewrite(&[Mutation::delete(key(2))], 3_000).unwrap();
    let pw = rows(&feed.next_events().await);
    assert_eq!(
        (pw[0].r#type, pw[0].op_type),
        (event::LogType::Prewrite as i32, event::row::OpType::Delete as i32)
    );
    assert_eq!(pw[0].old_value, Bytes::from_static(b"b"));
    cluster.rollback(s4).unwrap();
    let rb = rows(&feed.next_events().await);
    assert_eq!(
        (rb[0].r#type, rb[0].op_type, rb[0].commit_ts, rb[0].start_ts),
        (event::LogType::Rollback as i32, event::row::OpType::Unknown as i32, 0, s4)
    );
    cluster.commit_1pc(&[Mutation::put(record_key(200, 2), "y")]).unwrap();
    let c5 = cluster.commit_1pc(&[Mutation::put(key(9), "z")]).unwrap();
    let one = rows(&feed.next_events().await);
    assert_eq!((one[0].r#type, one[0].commit_ts, one[0].key.clone()), (committed, c5, key(9)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_ts_batches_grow_and_follow_locks() {
    let splits: Vec<Vec<u8>> = (1..20).map(|h| record_key(100, h * 10)).collect();
    let cluster = manual_cluster(1, splits).await;
    let regions = cluster.regions();
    assert_eq!(regions.len(), 20);
    let mut feed = Feed::v2(&cluster, 1).await;
    for r in &regions {
        register_initialized(&mut feed, &cluster, r, 7, 0).await;
    }
    let lock_ts = cluster.prewrite(&[Mutation::put(key(15), "v")], 60_000).unwrap();
    let _ = feed.next_events().await; // the PREWRITE
    cluster.tick_resolved_ts();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut first_ts = 0;
    while seen.len() < 20 {
        let m = feed.next().await;
        let r = m.resolved_ts.expect("resolved ts batch");
        assert!(m.events.is_empty());
        assert_eq!(r.request_id, 7);
        if sizes.is_empty() {
            first_ts = r.ts;
        }
        sizes.push(r.regions.len());
        seen.extend(r.regions);
    }
    assert_eq!(sizes, vec![8, 12]);
    assert_eq!(first_ts, lock_ts, "the slowest group is held back by the lock");
    let locked_region = cluster.region_of_raw(&key(15)).unwrap().id;
    seen.sort_unstable();
    let mut all: Vec<u64> = regions.iter().map(|r| r.id).collect();
    all.sort_unstable();
    assert_eq!(seen, all);
    let _ = locked_region;

    // Without stream-multiplexing the batches carry request id 0.
    let mut v1 = Feed::open(&cluster.store_address(1).unwrap(), Kind::V1).await.unwrap();
    register_initialized(&mut v1, &cluster, &regions[0], 3, 0).await;
    cluster.tick_resolved_ts();
    let m = v1.next().await;
    assert_eq!(m.resolved_ts.unwrap().request_id, 0);

    // Before 4.0.8 the resolved ts comes per region as Event.resolved_ts.
    let mut old = Feed::open(&cluster.store_address(1).unwrap(), Kind::V1).await.unwrap();
    let mut req = register(&cluster, &regions[1], 4, 0);
    req.header.as_mut().unwrap().ticdc_version = "4.0.7".to_owned();
    old.send(req).await;
    old.events_until(is_initialized).await;
    cluster.tick_resolved_ts();
    let events = old.next_events().await;
    assert!(matches!(events[0].event, Some(event::Event::ResolvedTs(_))));
    assert_eq!((events[0].region_id, events[0].request_id), (regions[1].id, 4));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_gives_epoch_not_match_with_new_regions() {
    let cluster = manual_cluster(1, vec![]).await;
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    register_initialized(&mut feed, &cluster, &region, 2, 0).await;
    let (left, right) = cluster.split_region(region.id, &key(50)).unwrap();
    assert_eq!((left.version, right.version), (region.version + 1, region.version + 1));
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = feed.next_error().await;
        let err = error_of(&e).epoch_not_match.clone().expect("epoch not match");
        assert_eq!(err.current_regions, vec![left.to_proto(), right.to_proto()]);
        got.push(e.request_id);
    }
    got.sort_unstable();
    assert_eq!(got, vec![1, 2], "every subscription of the region gets it");
    // The stale epoch is refused on a new register; the new one is accepted.
    feed.send(register(&cluster, &region, 3, 0)).await;
    assert!(error_of(&feed.next_error().await).epoch_not_match.is_some());
    register_initialized(&mut feed, &cluster, &right, 3, 0).await;
    // Merge: EpochNotMatch with no regions.
    cluster.merge_regions(left.id, right.id).unwrap();
    let e = feed.next_error().await;
    assert_eq!(error_of(&e).epoch_not_match.as_ref().map(|m| m.current_regions.len()), Some(0));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfer_gives_not_leader_with_new_leader() {
    let cluster = manual_cluster(3, vec![]).await;
    let region = cluster.regions()[0].clone();
    let leader = region.leader_store;
    let other = region.peers.iter().find(|p| p.store_id != leader).unwrap().store_id;
    // Registering on a follower: NotLeader with the leader hint.
    let mut follower = Feed::v2(&cluster, other).await;
    follower.send(register(&cluster, &region, 1, 0)).await;
    let e = follower.next_error().await;
    assert_eq!(error_of(&e).not_leader.as_ref().unwrap().leader.as_ref().unwrap().store_id, leader);

    let mut feed = Feed::v2(&cluster, leader).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    cluster.transfer_leader(region.id, other).unwrap();
    let e = feed.next_error().await;
    let nl = error_of(&e).not_leader.unwrap();
    assert_eq!((nl.region_id, nl.leader.unwrap().store_id), (region.id, other));
    register_initialized(&mut follower, &cluster, &region, 1, 0).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_and_duplicate_semantics() {
    let cluster = manual_cluster(1, vec![record_key(100, 50)]).await;
    let regions = cluster.regions();
    let (a, b) = (regions[0].clone(), regions[1].clone());
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &a, 1, 0).await;
    register_initialized(&mut feed, &cluster, &b, 1, 0).await;
    register_initialized(&mut feed, &cluster, &a, 2, 0).await;

    // Duplicate: refused, the original stays alive.
    feed.send(register(&cluster, &a, 2, 0)).await;
    let e = feed.next_error().await;
    assert_eq!(error_of(&e).duplicate_request.as_ref().unwrap().region_id, a.id);
    assert_eq!(cluster.registration_count(1), 3);

    // Deregister a whole request id: one region_not_found per region.
    feed.send(deregister(1, 0)).await;
    let mut gone = Vec::new();
    for _ in 0..2 {
        let e = feed.next_error().await;
        assert_eq!(e.request_id, 1);
        assert!(error_of(&e).region_not_found.is_some());
        gone.push(e.region_id);
    }
    gone.sort_unstable();
    let mut want = vec![a.id, b.id];
    want.sort_unstable();
    assert_eq!(gone, want);
    // Unknown: silent no-op. Then request 2 still streams.
    feed.send(deregister(9, 0)).await;
    cluster.commit_1pc(&[Mutation::put(key(1), "v")]).unwrap();
    let live = feed.next_events().await;
    assert_eq!((live[0].request_id, live[0].region_id), (2, a.id));
    // One region.
    feed.send(deregister(2, a.id)).await;
    let e = feed.next_error().await;
    assert_eq!((e.request_id, e.region_id), (2, a.id));
    assert_eq!(cluster.registration_count(1), 0);
    assert_eq!(cluster.registrations_of(2), 0);
    let stats = cluster.cdc_stats(1);
    assert_eq!((stats.streams_opened, stats.streams_with_deregister), (1, 1));
    assert_eq!((stats.registers, stats.deregisters, stats.live_registrations), (4, 3, 0));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_checks_in_order() {
    let cluster = manual_cluster(1, vec![]).await;
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    let mut bad_id = register(&cluster, &region, 1, 0);
    bad_id.header.as_mut().unwrap().cluster_id += 1;
    bad_id.kv_api = 1;
    feed.send(bad_id).await;
    let e = feed.next_error().await;
    assert_eq!(error_of(&e).cluster_id_mismatch.as_ref().unwrap().current, cluster.cluster_id());
    let mut raw = register(&cluster, &region, 1, 0);
    raw.kv_api = 1;
    feed.send(raw).await;
    assert_eq!(
        error_of(&feed.next_error().await).compatibility.as_ref().unwrap().required_version,
        "6.2.0"
    );
    cluster.set_server_busy(1, 1);
    feed.send(register(&cluster, &region, 1, 0)).await;
    assert!(error_of(&feed.next_error().await).server_is_busy.is_some());
    feed.send(ChangeDataRequest { region_id: 999_999, ..register(&cluster, &region, 1, 0) }).await;
    assert!(error_of(&feed.next_error().await).region_not_found.is_some());
    cluster.set_congested(1, 1);
    feed.send(register(&cluster, &region, 1, 0)).await;
    assert!(error_of(&feed.next_error().await).congested.is_some());
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    cluster.congest_region(region.id);
    assert!(error_of(&feed.next_error().await).congested.is_some());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_negotiation_and_v1_only_store() {
    let cluster = manual_cluster(2, vec![]).await;
    let addr = cluster.store_address(1).unwrap();
    let code = |r: Result<Feed, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(Feed::open(&addr, Kind::V2(Some("bogus"))).await),
        Some(tonic::Code::Unimplemented)
    );
    assert_eq!(code(Feed::open(&addr, Kind::V2(Some(""))).await), Some(tonic::Code::Unimplemented));
    assert_eq!(code(Feed::open(&addr, Kind::V2(Some(" stream-multiplexing "))).await), None);
    // TiCDC's probe: open, close the send side, read: EOF means V2 is served.
    let mut probe = Feed::open(&addr, Kind::V2(Some("stream-multiplexing"))).await.unwrap();
    drop(std::mem::replace(&mut probe.tx, tokio::sync::mpsc::channel(1).0));
    assert!(matches!(probe.recv().await, Ok(None)));
    cluster.set_v1_only(1, true);
    assert_eq!(
        code(Feed::open(&addr, Kind::V2(Some("stream-multiplexing"))).await),
        Some(tonic::Code::Unimplemented)
    );
    assert!(Feed::open(&addr, Kind::V1).await.is_ok());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_txn_status_fails_the_stream_not_the_store() {
    use kvfeed_proto::cdcpb::change_data_request::{NotifyTxnStatus, Request};
    let cluster = manual_cluster(1, vec![]).await;
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    feed.send(ChangeDataRequest {
        request: Some(Request::NotifyTxnStatus(NotifyTxnStatus::default())),
        ..register(&cluster, &region, 1, 0)
    })
    .await;
    let err = loop {
        match feed.recv().await {
            Err(status) => break status,
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended without an error"),
        }
    };
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    let mut again = Feed::v2(&cluster, 1).await;
    register_initialized(&mut again, &cluster, &region, 1, 0).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_stop_restart_and_stream_reset() {
    let cluster = manual_cluster(1, vec![]).await;
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    cluster.reset_store_streams(1);
    assert_eq!(feed.recv().await.unwrap_err().code(), tonic::Code::Unavailable);
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    cluster.stop_store(1).await.unwrap();
    assert!(feed.recv().await.is_err());
    assert!(Feed::open(&cluster.store_address(1).unwrap(), Kind::V1).await.is_err());
    cluster.restart_store(1).await.unwrap();
    let mut feed = Feed::v2(&cluster, 1).await;
    register_initialized(&mut feed, &cluster, &region, 1, 0).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_resolved_ts_only_after_initialized_even_when_slow() {
    let cluster = kvfeed_sim::Cluster::start(kvfeed_sim::ClusterConfig {
        stores: 1,
        resolved_ts_interval: Some(std::time::Duration::from_millis(5)),
        ..kvfeed_sim::ClusterConfig::default()
    })
    .await
    .unwrap();
    for h in 0..200 {
        cluster.commit_1pc(&[Mutation::put(key(h), "v")]).unwrap();
    }
    cluster.set_store_slow(1, std::time::Duration::from_millis(2));
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    feed.send(register(&cluster, &region, 1, 0)).await;
    let mut initialized = false;
    let mut scanned = 0;
    for _ in 0..10_000 {
        let m = feed.next().await;
        if let Some(r) = m.resolved_ts {
            assert!(initialized, "no resolved ts before INITIALIZED");
            assert_eq!(r.regions, vec![region.id]);
            break;
        }
        for e in &m.events {
            scanned += rows(std::slice::from_ref(e)).len();
            initialized |= is_initialized(e);
        }
    }
    assert!(initialized);
    assert_eq!(scanned, 201, "200 scanned rows and INITIALIZED");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_scans_is_server_is_busy() {
    let cluster = kvfeed_sim::Cluster::start(kvfeed_sim::ClusterConfig {
        stores: 1,
        resolved_ts_interval: None,
        max_pending_scans: 0,
        ..kvfeed_sim::ClusterConfig::default()
    })
    .await
    .unwrap();
    let region = cluster.regions()[0].clone();
    let mut feed = Feed::v2(&cluster, 1).await;
    feed.send(register(&cluster, &region, 1, 0)).await;
    let e = feed.next_error().await;
    let busy = error_of(&e).server_is_busy.clone().unwrap();
    assert_eq!(busy.reason, "too many pending incremental scans");
    assert_eq!(cluster.registration_count(1), 0);
    cluster.shutdown().await;
}
