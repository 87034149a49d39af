//! §10 M57 and design invariant 4: unsubscribing while regions are at every stage (range tasks
//! queued, locating leaders, waiting for the initial-scan window, registered and scanning,
//! streaming, in the error path) releases every lock once, deregisters from TiKV, ends the
//! stream and delivers nothing after; other subscriptions are unaffected.

mod common;

use std::time::Duration;

use common::{Log, TICK, eventually, start_with, workload};
use kvfeed::SubscriptionId;
use kvfeed_sim::ClusterConfig;
use kvfeed_span::table::{record_key, table_span};

async fn assert_drained(
    h: &common::Harness,
    id: SubscriptionId,
    log: &mut Log,
    sub: &mut kvfeed::Subscription,
) {
    let ended_with = log.until_end(sub).await;
    assert!(ended_with.is_none(), "an unsubscribed stream just ends: {ended_with:?}");
    assert!(sub.try_recv().is_none(), "nothing after the end");
    assert_eq!(h.client.region_count(id), 0);
    assert_eq!(h.client.resolved_ts(id), None, "the subscription is forgotten");
    // The Deregisters were sent before the stream ended; TiKV applies them as they arrive.
    eventually("TiKV serves nothing for it", || h.cluster.registrations_of(id.get()) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_at_every_stage_releases_everything_once() {
    let splits: Vec<Vec<u8>> = (1..48).map(|i| record_key(100, i * 20)).collect();
    let h = start_with(
        ClusterConfig {
            stores: 3,
            split_keys: splits,
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |config| {
            config.initial_scan_window = 2;
            config.range_concurrency = 1;
        },
    )
    .await;
    let span = table_span(100);
    let mut load = workload(20, 960);
    load.run(&h.cluster, 300, 0).await;
    let start_ts = h.cluster.now_ts();
    // A subscription that lives through it all, checked by the verifier at the end.
    let mut keeper = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut keeper_log = Log::default();
    keeper_log.until_resolved(&mut keeper, h.cluster.now_ts()).await;

    // Slow stores: scans crawl, so regions pile up in every stage.
    for store in h.cluster.store_ids() {
        h.cluster.set_store_slow(store, Duration::from_millis(30));
    }
    // 1. At once: range tasks queued (one at a time), nothing locked yet.
    let mut a = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    // 2. Some regions registered and scanning, most waiting for the initial-scan window.
    let mut b = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let a_id = a.id();
    h.client.unsubscribe(a_id);
    let b_id = b.id();
    eventually("b registers regions", || h.cluster.registrations_of(b_id.get()) >= 2).await;
    h.client.unsubscribe(b_id);
    h.client.unsubscribe(b_id); // idempotent
    let registers_before =
        h.cluster.store_ids().iter().map(|&s| h.cluster.cdc_stats(s).deregisters).sum::<u64>();
    assert_drained(&h, a_id, &mut Log::default(), &mut a).await;
    assert_drained(&h, b_id, &mut Log::default(), &mut b).await;
    for store in h.cluster.store_ids() {
        h.cluster.set_store_slow(store, Duration::ZERO);
    }

    // 3. Streaming, with regions in the error path (splits and leader moves in flight).
    let mut c = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut c_log = Log::default();
    c_log.until_resolved(&mut c, h.cluster.now_ts()).await;
    load.run(&h.cluster, 100, 0).await;
    let regions = h.cluster.regions();
    for region in regions.iter().take(8) {
        let store = region.peers[1].store_id;
        h.cluster.transfer_leader(region.id, store).unwrap();
    }
    let region = h.cluster.region_of_raw(&record_key(100, 510)).unwrap().id;
    h.cluster.split_region(region, &record_key(100, 510)).unwrap();
    let c_id = c.id();
    h.client.unsubscribe(c_id);
    assert_drained(&h, c_id, &mut c_log, &mut c).await;
    let deregisters =
        h.cluster.store_ids().iter().map(|&s| h.cluster.cdc_stats(s).deregisters).sum::<u64>();
    assert!(
        deregisters > registers_before,
        "Deregister was sent ({registers_before} -> {deregisters})"
    );

    // The keeper saw all of it through.
    load.run(&h.cluster, 100, 0).await;
    keeper_log.until_resolved(&mut keeper, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &keeper_log);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_unsubscribes() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |_| {},
    )
    .await;
    let mut sub = h.client.subscribe(table_span(100), h.cluster.now_ts()).await.unwrap();
    let id = sub.id();
    Log::default().until_resolved(&mut sub, h.cluster.now_ts()).await;
    assert_eq!(h.cluster.registrations_of(id.get()), 1);
    drop(sub);
    eventually("deregistered", || h.cluster.registrations_of(id.get()) == 0).await;
    eventually("forgotten", || h.client.resolved_ts(id).is_none()).await;
    h.stop().await;
}
