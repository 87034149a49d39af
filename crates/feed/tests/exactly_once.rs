//! Exactly once within a subscription, through the simulator over loopback: regions read again
//! from their checkpoints (stream resets, a store restart, splits, a merge, leader moves) while
//! the workload runs
//! deliver no row twice, and miss none; with `Config::exactly_once` off the same run delivers
//! duplicates (the test would catch a record that does nothing). A subscription from another's
//! checkpoint goes on where it stopped.

mod common;

use common::{Harness, Log, TICK, start_with, workload};
use kvfeed::Config;
use kvfeed_sim::ClusterConfig;
use kvfeed_span::table::{record_key, table_span};

const TABLE: i64 = 100;

async fn cluster(tweak: impl FnOnce(&mut Config)) -> Harness {
    start_with(
        ClusterConfig {
            stores: 3,
            split_keys: [25, 50, 75].iter().map(|&h| record_key(TABLE, h)).collect(),
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        tweak,
    )
    .await
}

/// Runs the workload with re-reads in between: every round writes, reads some, then makes every
/// region (or some) be read again from its checkpoint. Returns the log and the report.
async fn run(h: &Harness) -> (Log, kvfeed_sim::Report) {
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(table_span(TABLE), start_ts).await.expect("subscribe");
    let mut log = Log::default();
    let mut work = workload(11, 100);
    for round in 0..8 {
        work.run(&h.cluster, 60, 0).await;
        let ts = h.cluster.now_ts();
        // Rows above the checkpoint are delivered before the re-read makes TiKV send them again.
        log.until_resolved(&mut sub, ts).await;
        work.run(&h.cluster, 30, 0).await;
        let regions = h.cluster.regions();
        match round % 4 {
            0 if round == 0 => {
                for store in h.cluster.store_ids() {
                    h.cluster.reset_store_streams(store);
                }
            }
            0 => {
                h.cluster.stop_store(1).await.expect("stop a store");
                h.cluster.restart_store(1).await.expect("restart it");
            }
            1 => {
                let region = &regions[regions.len() / 2];
                let other = region.peers.iter().find(|p| p.store_id != region.leader_store);
                let _ = h.cluster.transfer_leader(region.id, other.expect("replicas").store_id);
            }
            2 => {
                let last = regions.last().expect("a region").id;
                let _ = h.cluster.split_region(last, &record_key(TABLE, 90 - round));
            }
            _ => {
                let _ = h.cluster.merge_regions(regions[0].id, regions[1].id);
            }
        }
    }
    let end = h.cluster.now_ts();
    log.until_resolved(&mut sub, end).await;
    drop(sub);
    let report = kvfeed_sim::verify_up_to(
        &h.cluster.committed_rows(),
        &table_span(TABLE),
        start_ts,
        &log.events,
        log.resolved,
    );
    (log, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_read_again_deliver_no_row_twice() {
    let h = cluster(|_| {}).await;
    let (_, report) = run(&h).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.duplicated, 0, "first duplicate: {:?}", report.first_duplicated);
    assert!(report.expected > 500, "the workload wrote rows: {report:?}");
    let dropped = h
        .client
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("kvfeed_kvclient_duplicate_rows_dropped_count "))
        .map(|n| n.trim().parse::<u64>().expect("a number"))
        .expect("the counter is exported");
    assert!(dropped > 0, "the re-reads sent rows again, and they were dropped");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_record_the_same_run_delivers_duplicates() {
    let h = cluster(|config| config.exactly_once = false).await;
    let (_, report) = run(&h).await;
    assert_eq!(report.missing, 0, "{report:#?}");
    assert!(report.duplicated > 0, "the re-reads repeat rows: {report:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_from_a_checkpoint_goes_on_where_the_last_one_stopped() {
    let h = cluster(|_| {}).await;
    let start_ts = h.cluster.now_ts();
    let mut first = h.client.subscribe(table_span(TABLE), start_ts).await.expect("subscribe");
    assert_eq!(first.checkpoint(), start_ts);
    let mut log = Log::default();
    workload(12, 100).run(&h.cluster, 150, 0).await;
    log.until_resolved(&mut first, h.cluster.now_ts()).await;
    let checkpoint = first.checkpoint();
    assert_eq!(checkpoint, log.resolved);
    drop(first);
    // Rows that arrived before the last resolved ts but above it are not covered by the
    // checkpoint: a consumer that persists only the checkpoint drops them, and the next
    // subscription gives them again.
    log.events.retain(|event| match event {
        kvfeed_sim::FeedEvent::Row(row) => row.commit_ts <= checkpoint,
        _ => true,
    });
    workload(13, 100).run(&h.cluster, 150, 0).await;
    let mut second = h.client.subscribe(table_span(TABLE), checkpoint).await.expect("resume");
    log.until_resolved(&mut second, h.cluster.now_ts()).await;
    let report = kvfeed_sim::verify_up_to(
        &h.cluster.committed_rows(),
        &table_span(TABLE),
        start_ts,
        &log.events,
        log.resolved,
    );
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.duplicated, 0, "nothing at or below the checkpoint again");
    h.stop().await;
}
