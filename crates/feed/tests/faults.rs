//! The client under the cluster's faults (reference §10 D, L, M), over loopback gRPC against
//! the simulated cluster, every run checked by the sim's verifier.

mod common;

use std::time::Duration;

use common::{Log, TICK, error_count, eventually, eventually_ok, start, start_with, workload};
use kvfeed_sim::{ClusterConfig, Mutation};
use kvfeed_span::table::{record_key, table_span};

fn splits(handles: &[i64]) -> Vec<Vec<u8>> {
    handles.iter().map(|&h| record_key(100, h)).collect()
}

/// §10 L43: NotLeader sends the region to the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfers() {
    let h = start(3, &[100, 200]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(10, 300);
    let mut log = Log::default();
    for round in 0..6u64 {
        load.run(&h.cluster, 50, 0).await;
        log.until_resolved(&mut sub, h.cluster.now_ts()).await;
        for region in h.cluster.regions() {
            let store = region.peers[(round as usize + 1) % region.peers.len()].store_id;
            h.cluster.transfer_leader(region.id, store).unwrap();
        }
    }
    load.run(&h.cluster, 50, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert!(error_count(&h.client, "NotLeader") > 0);
    h.stop().await;
}

/// §10 M58: a region splits while its incremental scan runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_during_the_incremental_scan() {
    let h = start(1, &[]).await;
    let span = table_span(100);
    let mut load = workload(11, 1000);
    let start_ts = h.cluster.now_ts();
    load.run(&h.cluster, 400, 0).await;
    // Slow the store so the scan is still running when the region splits.
    h.cluster.set_store_slow(1, Duration::from_millis(200));
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    eventually("the region is registered", || h.cluster.registrations_of(sub.id().get()) == 1)
        .await;
    let region = h.cluster.region_of_raw(&record_key(100, 500)).unwrap().id;
    h.cluster.split_region(region, &record_key(100, 500)).unwrap();
    h.cluster.set_store_slow(1, Duration::ZERO);
    load.run(&h.cluster, 100, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(h.client.region_count(sub.id()), 2);
    assert!(error_count(&h.client, "EpochNotMatch") > 0);
    h.stop().await;
}

/// §10 M58: two regions with different resolved ts merge; the merged region starts from the
/// lower one and the published resolved ts never goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_of_regions_with_different_resolved_ts() {
    let h = start(2, &[100]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    // A transaction holds a lock in the left region: its resolved ts stays below the lock
    // while the right region's moves on.
    let held = h.cluster.prewrite(&[Mutation::put(record_key(100, 5), "held")], 60_000).unwrap();
    let mut load = workload(12, 200);
    load.run(&h.cluster, 100, 0).await;
    tokio::time::sleep(TICK * 4).await;
    let left = h.cluster.region_of_raw(&record_key(100, 5)).unwrap().id;
    let right = h.cluster.region_of_raw(&record_key(100, 150)).unwrap().id;
    h.cluster.merge_regions(left, right).unwrap();
    load.run(&h.cluster, 100, 0).await;
    assert!(log.resolved <= held, "the lock holds the subscription back");
    h.cluster.commit(held).unwrap();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(h.client.region_count(sub.id()), 1);
    h.stop().await;
}

/// §10 D13 and L45: a store stops (its leaders move) and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_stop_and_restart() {
    let h = start(3, &[100, 200, 300]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(13, 400);
    let mut log = Log::default();
    load.run(&h.cluster, 100, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.cluster.stop_store(1).await.unwrap();
    load.run(&h.cluster, 100, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.cluster.restart_store(1).await.unwrap();
    for region in h.cluster.regions() {
        h.cluster.transfer_leader(region.id, 1).unwrap();
    }
    load.run(&h.cluster, 100, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    h.stop().await;
}

/// §10 L45: streams fail (send and receive errors); regions are registered again and the
/// resolved ts does not go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resets() {
    let h = start(3, &[100, 200]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(14, 300);
    let mut log = Log::default();
    for round in 0..5u64 {
        load.run(&h.cluster, 60, 0).await;
        h.cluster.reset_store_streams(1 + round % 3);
        load.run(&h.cluster, 20, 0).await;
        log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    }
    h.verify(&span, start_ts, &log);
    assert!(error_count(&h.client, "SendRequestToStore") > 0);
    h.stop().await;
}

/// §10 M62 and §11 item 9: a busy store is retried with backoff, not in a hot loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_is_busy_storm_backs_off() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |config| {
            config.region_backoff =
                kvfeed::Backoff::new(Duration::from_millis(20), Duration::from_millis(400));
        },
    )
    .await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    h.cluster.set_server_busy(1, u32::MAX);
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    eventually("the first busy answer", || h.cluster.cdc_stats(1).registers > 0).await;
    let before = h.cluster.cdc_stats(1).registers;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = h.cluster.cdc_stats(1).registers - before;
    // With the 20 ms..400 ms jittered backoff a region retries at most ~12 times in 2 s (the
    // delays double to 400 ms and stay there); a hot loop would send thousands.
    assert!(during <= 16, "{during} registers in 2 s: no backoff");
    assert!(during >= 2, "the region keeps retrying ({during})");
    h.cluster.set_server_busy(1, 0);
    workload(15, 100).run(&h.cluster, 50, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert!(error_count(&h.client, "KvIsBusy") >= during);
    h.stop().await;
}

/// §11 item 10: DuplicateRequest deregisters and re-registers that one region; the
/// subscription and the other regions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_request_re_registers_one_region() {
    let h = start(2, &[100]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(16, 200);
    let mut log = Log::default();
    load.run(&h.cluster, 50, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    let region = h.cluster.region_of_raw(&record_key(100, 150)).unwrap();
    let store = region.leader_store;
    let deregisters = h.cluster.cdc_stats(store).deregisters;
    assert_eq!(h.cluster.send_duplicate_request(region.id), 1);
    eventually("the region is deregistered", || {
        h.cluster.cdc_stats(store).deregisters > deregisters
    })
    .await;
    load.run(&h.cluster, 50, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(error_count(&h.client, "DuplicateRequest"), 1);
    assert_eq!(h.cluster.registrations_of(sub.id().get()), 2, "one registration per region");
    h.stop().await;
}

/// §10 L44: a store of another cluster fails the subscription with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_id_mismatch_fails_the_subscription() {
    let h = start(1, &[]).await;
    let other = h.cluster.cluster_id() + 1;
    h.cluster.set_store_cluster_id(1, Some(other));
    let mut sub = h.client.subscribe(table_span(100), h.cluster.now_ts()).await.unwrap();
    let mut log = Log::default();
    let error = log.until_end(&mut sub).await.expect("the subscription fails");
    match error {
        kvfeed::Error::ClusterIdMismatch { peer, expected, got } => {
            assert_eq!((peer, got), (kvfeed::ClusterPeer::Store(1), other));
            assert_eq!(expected, h.cluster.cluster_id());
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(h.client.region_count(sub.id()), 0);
    h.stop().await;
}

/// §10 L44: a store that needs a newer client fails the subscription with a typed error; the
/// other subscriptions on other stores go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_store_fails_the_subscription() {
    let h = start(2, &[100]).await;
    let left = h.cluster.region_of_raw(&record_key(100, 5)).unwrap();
    let right = h.cluster.region_of_raw(&record_key(100, 150)).unwrap();
    assert_ne!(left.leader_store, right.leader_store);
    h.cluster.set_store_requires_version(left.leader_store, Some("99.0.0".to_owned()));
    let start_ts = h.cluster.now_ts();
    let mut failing = h.client.subscribe(table_span(100), start_ts).await.unwrap();
    let healthy_span = kvfeed_span::Span::new(
        kvfeed_span::EncodedKey::encode(&record_key(100, 150)),
        kvfeed_span::EncodedKey::encode(&record_key(100, 160)),
    )
    .unwrap();
    let mut healthy = h.client.subscribe(healthy_span.clone(), start_ts).await.unwrap();
    let error = Log::default().until_end(&mut failing).await.expect("the subscription fails");
    match error {
        kvfeed::Error::Incompatible { store_id, required_version } => {
            assert_eq!((store_id, required_version.as_str()), (left.leader_store, "99.0.0"));
        }
        other => panic!("unexpected error {other}"),
    }
    workload(21, 200).run(&h.cluster, 50, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut healthy, h.cluster.now_ts()).await;
    h.verify(&healthy_span, start_ts, &log);
    h.stop().await;
}

/// §1 item 5 of the issue: at most `initial_scan_window` incremental scans run per store, so
/// the store never reports too many pending scans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_scan_window_bounds_scans_per_store() {
    let h = start_with(
        ClusterConfig {
            stores: 1,
            split_keys: splits(&(1..64).map(|i| i * 4).collect::<Vec<_>>()),
            resolved_ts_interval: Some(TICK),
            // Twice the window: without admission, 64 regions at once would pass it.
            max_pending_scans: 8,
            ..ClusterConfig::default()
        },
        |config| config.initial_scan_window = 4,
    )
    .await;
    let span = table_span(100);
    workload(22, 256).run(&h.cluster, 200, 0).await;
    let start_ts = h.cluster.now_ts();
    h.cluster.set_store_slow(1, Duration::from_millis(2));
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(h.client.region_count(sub.id()), 64);
    assert_eq!(error_count(&h.client, "KvIsBusy"), 0, "the store was never overloaded");
    h.stop().await;
}

/// A client told to expect another cluster refuses PD at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_id_mismatch_with_pd_is_a_typed_error() {
    let cluster = kvfeed_sim::Cluster::start(ClusterConfig::default()).await.unwrap();
    let mut config = common::test_config(&cluster);
    config.cluster_id = Some(cluster.cluster_id() + 1);
    let error = kvfeed::Client::connect(config).await.expect_err("wrong cluster");
    assert!(
        matches!(
            error,
            kvfeed::Error::ClusterIdMismatch { peer: kvfeed::ClusterPeer::Pd, expected, .. }
                if expected == cluster.cluster_id() + 1
        ),
        "{error}"
    );
    cluster.shutdown().await;
}

/// §10 M60: a store without EventFeedV2 beside multiplexing stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_only_store_beside_v2_stores() {
    let h = start_with(
        ClusterConfig {
            stores: 3,
            split_keys: splits(&[100, 200]),
            v1_only_stores: vec![2],
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |_| {},
    )
    .await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(17, 300);
    let mut log = Log::default();
    load.run(&h.cluster, 100, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    // Move every leader to the V1 store, then back.
    for store in [2, 1] {
        for region in h.cluster.regions() {
            h.cluster.transfer_leader(region.id, store).unwrap();
        }
        load.run(&h.cluster, 100, 0).await;
        log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    }
    h.verify(&span, start_ts, &log);
    h.stop().await;
}

/// §10 L48 and D12: an abandoned lock holds the resolved ts until it is resolved, on demand
/// and automatically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_lock_is_resolved_and_the_resolved_ts_moves_again() {
    let h = start_with(
        ClusterConfig {
            stores: 2,
            split_keys: splits(&[100]),
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |config| {
            config.lock_resolve_fence = None;
            config.lock_resolve_cooldown = Duration::from_millis(100);
        },
    )
    .await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    let abandoned = h.cluster.abandon_lock(&record_key(100, 7), 200).unwrap();
    workload(18, 200).run(&h.cluster, 50, 0).await;
    tokio::time::sleep(TICK * 4).await;
    assert!(h.client.resolved_ts(sub.id()).unwrap() <= abandoned, "the lock holds it back");
    // A target at PD's clock is refused: it would scan transactions that have barely started.
    let recent = h.client.resolve_lock(sub.id(), h.cluster.now_ts());
    assert!(matches!(recent, Err(kvfeed::Error::LockTargetTooRecent { .. })), "{recent:?}");
    // The lock's TTL (200 ms) passes, and PD's clock moves past the margin above the target;
    // resolve_lock rolls the lock back.
    h.cluster.advance_tso(2 * kvfeed::LOCK_RESOLVE_MARGIN.as_millis() as i64);
    let queued = eventually_ok("the client's clock passes the margin", || {
        h.client.resolve_lock(sub.id(), abandoned + 1).ok()
    })
    .await;
    // Regions already past the target are left alone.
    assert_eq!(queued, 1, "only the stuck region is queued");
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_locks_are_resolved_automatically_when_the_lag_passes_the_fence() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |config| {
            config.lock_resolve_fence = Some(Duration::from_millis(300));
            config.lock_resolve_cooldown = Duration::from_millis(100);
        },
    )
    .await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    h.cluster.abandon_lock(&record_key(100, 7), 100).unwrap();
    workload(19, 100).run(&h.cluster, 30, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    h.stop().await;
}

/// Unknown subscriptions are fine for every call (§11 item 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subscription_ids_are_harmless() {
    let h = start(1, &[]).await;
    let sub = h.client.subscribe(table_span(100), h.cluster.now_ts()).await.unwrap();
    let id = sub.id();
    drop(sub); // unsubscribes
    eventually("drained", || h.client.region_count(id) == 0 && h.client.resolved_ts(id).is_none())
        .await;
    h.client.unsubscribe(id);
    h.client.unsubscribe(id);
    assert!(matches!(h.client.resolve_lock(id, 1), Err(kvfeed::Error::UnknownSubscription(_))));
    assert_eq!(h.client.region_count(id), 0);
    h.stop().await;
}

/// §10 L46: a store whose version PD reports outside the supported range (an old store, or one
/// mid-way through a rolling upgrade) is asked about again until it is upgraded: its regions
/// stay locked and unregistered meanwhile, and after the upgrade the subscription resolves
/// with every row, those written while it waited included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_an_unsupported_version_is_waited_for() {
    let h = start(2, &[100]).await;
    let old = h.cluster.region_of_raw(&record_key(100, 5)).unwrap().leader_store;
    h.cluster.set_store_version(old, "6.5.0");
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    eventually("the old store's regions are refused again and again", || {
        error_count(&h.client, "StoreVersion") >= 3
    })
    .await;
    assert_eq!(h.cluster.cdc_stats(old).registers, 0, "nothing is sent to the old store");
    let stats = h.client.stats(sub.id()).unwrap();
    assert!(stats.initialized < stats.regions, "its regions stay locked, not initialized");
    assert_eq!(stats.resolved_ts, start_ts, "and hold the subscription's resolved ts");
    workload(22, 200).run(&h.cluster, 50, 0).await;
    h.cluster.set_store_version(old, "8.5.0");
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert!(h.cluster.cdc_stats(old).registers > 0);
    h.stop().await;
}
