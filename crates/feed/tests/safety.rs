//! Upstream safety through the simulator: the client's GC service safe point (held at the lowest
//! checkpoint, refused start ts, refused refreshes, removed at shutdown) and lock resolution as
//! client-go does it (live transactions whose secondaries came first, abandoned async-commit
//! transactions committed or rolled back through their secondaries), and subscription quotas
//! (one unread subscription does not stall the others).

mod common;

use std::time::Duration;

use common::{Log, TICK, error_count, eventually, eventually_ok, start_with, workload};
use kvfeed::{Error, LOCK_RESOLVE_MARGIN};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation, TxnError};
use kvfeed_span::table::{record_key, table_span};

fn splits(handles: &[i64]) -> Vec<Vec<u8>> {
    handles.iter().map(|&h| record_key(100, h)).collect()
}

/// Registrations any store served below the GC safe point (changes may be missing there).
fn registers_below_safe_point(cluster: &Cluster) -> u64 {
    cluster.store_ids().iter().map(|&s| cluster.cdc_stats(s).registers_below_safe_point).sum()
}

fn service_point(cluster: &Cluster, service_id: &str) -> Option<u64> {
    cluster.service_safe_points().into_iter().find(|(id, _)| id == service_id).map(|(_, sp)| sp)
}

fn put(handle: i64, value: &'static str) -> Mutation {
    Mutation::put(record_key(100, handle), value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_ts_below_the_gc_safe_point_is_refused_at_once() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |_| {},
    )
    .await;
    let old_ts = h.cluster.now_ts();
    workload(1, 20).run(&h.cluster, 20, 0).await;
    // GC moves to the start of PD's current millisecond: make it a later one than `old_ts`'s.
    h.cluster.advance_tso(10);
    let safe_point = h.cluster.run_gc(Duration::ZERO);
    assert!(safe_point > old_ts);
    let refused =
        tokio::time::timeout(Duration::from_secs(2), h.client.subscribe(table_span(100), old_ts))
            .await
            .expect("refused at once, not after a timeout");
    match refused {
        Err(Error::StartTsBelowGcSafePoint { start_ts, safe_point: sp }) => {
            assert_eq!((start_ts, sp), (old_ts, safe_point));
        }
        other => panic!("expected StartTsBelowGcSafePoint, got {other:?}"),
    }
    assert_eq!(registers_below_safe_point(&h.cluster), 0, "nothing was asked of TiKV");
    // At the safe point itself, the history is there: admitted.
    let sub = h.client.subscribe(table_span(100), safe_point).await.expect("at the safe point");
    drop(sub);
    h.stop().await;
}

/// GC runs with a life time of zero over and over while the client reads through store
/// restarts: the client's safe point holds it at the lowest checkpoint, every row arrives, no
/// registration is ever served below the safe point, and shutdown removes the safe point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_point_follows_the_checkpoint_and_gc_never_passes_it() {
    let h = start_with(
        ClusterConfig {
            stores: 2,
            split_keys: splits(&[50]),
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |config| {
            config.gc_service_name = Some("safety-test".to_owned());
            config.gc_refresh = Duration::from_millis(100);
        },
    )
    .await;
    let service = "kvfeed-safety-test";
    assert_eq!(h.client.gc_service_id(), service);
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    assert_eq!(service_point(&h.cluster, service), Some(start_ts), "held before anything is read");
    let mut log = Log::default();
    let mut load = workload(2, 100);
    for round in 0..6 {
        load.run(&h.cluster, 40, 0).await;
        let safe_point = h.cluster.run_gc(Duration::ZERO);
        let published = h.client.stats(sub.id()).unwrap().published_ts;
        assert!(safe_point <= published, "GC passed the checkpoint: {safe_point} > {published}");
        // Streams break: regions are read again from their checkpoints.
        h.cluster.reset_store_streams(1 + round % 2);
        log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    }
    eventually("the safe point advances with the checkpoint", || {
        service_point(&h.cluster, service).is_some_and(|sp| sp > start_ts)
    })
    .await;
    assert!(h.cluster.run_gc(Duration::ZERO) > start_ts, "GC advances behind the client");
    assert_eq!(registers_below_safe_point(&h.cluster), 0);
    h.verify(&span, start_ts, &log);
    let cluster = h.stop_client().await;
    assert_eq!(service_point(&cluster, service), None, "a clean shutdown removes the safe point");
    cluster.shutdown().await;
}

/// The client's safe point expires (as if PD had been out of reach for longer than its TTL) and
/// GC moves past the checkpoint: the next refresh is refused and the subscription fails with a typed error instead of reading history
/// that may be gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_fails_the_subscription() {
    // No resolved ts: the checkpoint stays at the start ts.
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: None, ..ClusterConfig::default() },
        |config| config.gc_refresh = Duration::from_millis(50),
    )
    .await;
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(table_span(100), start_ts).await.unwrap();
    workload(3, 10).run(&h.cluster, 10, 0).await;
    let forced = h.cluster.force_gc(Duration::ZERO);
    assert!(forced > start_ts);
    let error = tokio::time::timeout(common::DEADLINE, async {
        loop {
            match sub.recv().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return error,
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await
    .expect("the subscription fails");
    match error {
        Error::GcSafePointPassed { checkpoint, safe_point, service_id } => {
            assert_eq!((checkpoint, safe_point), (start_ts, forced));
            assert_eq!(service_id, kvfeed_sim::GC_WORKER_SERVICE);
        }
        other => panic!("expected GcSafePointPassed, got {other:?}"),
    }
    assert!(sub.recv().await.is_none());
    h.stop().await;
}

/// The resolver stage's completed runs so far.
fn resolver_runs(client: &kvfeed::Client) -> u64 {
    let needle = "kvfeed_kvclient_lock_resolve_duration_seconds_count{action=\"run\"} ";
    client
        .metrics_text()
        .lines()
        .find_map(|line| line.strip_prefix(needle).map(|n| n.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// Asks for the locks of the subscription below `target` to be resolved, once PD's clock (as the
/// client knows it) is past the margin; returns how many regions were queued.
async fn resolve_when_allowed(
    h: &common::Harness,
    sub: kvfeed::SubscriptionId,
    target: u64,
) -> usize {
    eventually_ok("PD's clock passes the margin", || h.client.resolve_lock(sub, target).ok()).await
}

fn two_region_cluster() -> ClusterConfig {
    ClusterConfig {
        stores: 2,
        split_keys: splits(&[50]),
        resolved_ts_interval: Some(TICK),
        ..ClusterConfig::default()
    }
}

/// A subscription of table 100 from now, read until it resolved past its start.
async fn watching_table_100(
    h: &common::Harness,
) -> (kvfeed_span::Span, u64, kvfeed::Subscription, Log) {
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    (span, start_ts, sub, log)
}

fn manual_resolution(config: &mut kvfeed::Config) {
    config.lock_resolve_fence = None;
    config.lock_resolve_cooldown = Duration::from_millis(50);
}

/// A transaction prewrites its secondary (region 1) before its primary (region 2), and the
/// client resolves locks meanwhile: the primary has no lock yet, but the scanned lock has not
/// expired, so nothing is rolled back and the transaction commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_transaction_whose_secondaries_came_first_is_never_rolled_back() {
    let h = start_with(two_region_cluster(), manual_resolution).await;
    let (span, start_ts, mut sub, mut log) = watching_table_100(&h).await;
    // Primary at handle 70 (second region), secondary at handle 10 (first region).
    let txn = [put(70, "primary"), put(10, "secondary")];
    let txn_ts = h.cluster.begin();
    h.cluster.prewrite_part(txn_ts, &txn, &[1], 60_000, false).unwrap();
    // PD's clock moves past the margin (the lock's 60 s TTL is far from expiring).
    h.cluster.advance_tso(2 * LOCK_RESOLVE_MARGIN.as_millis() as i64);
    let runs = resolver_runs(&h.client);
    let queued = resolve_when_allowed(&h, sub.id(), txn_ts + 1).await;
    assert_eq!(queued, 1, "the region with the secondary lags");
    eventually("the resolver ran", || resolver_runs(&h.client) > runs).await;
    // The primary's prewrite arrives: the transaction was left alone, so it commits.
    h.cluster.prewrite_part(txn_ts, &txn, &[0], 60_000, false).expect("not rolled back");
    let commit_ts = h.cluster.commit(txn_ts).expect("commits");
    log.until_resolved(&mut sub, commit_ts + 1).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(log.rows, 2);
    h.stop().await;
}

/// An async-commit transaction prewritten on two regions and abandoned: once its TTL expires,
/// its secondaries say every key is locked, so it is committed at the largest min commit ts,
/// the rows are delivered and the resolved ts moves again. 1PC transactions go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_async_commit_transaction_is_committed_through_its_secondaries() {
    let h = start_with(two_region_cluster(), manual_resolution).await;
    let (span, start_ts, mut sub, mut log) = watching_table_100(&h).await;
    let txn_ts =
        h.cluster.prewrite_async(&[put(10, "a"), put(70, "b"), put(20, "c")], 100).unwrap();
    for handle in [30, 80, 90] {
        h.cluster.commit_1pc(&[Mutation::put(record_key(100, handle), "one-phase")]).unwrap();
    }
    tokio::time::sleep(TICK * 4).await;
    assert!(h.client.resolved_ts(sub.id()).unwrap() <= txn_ts, "the locks hold it back");
    h.cluster.advance_tso(2 * LOCK_RESOLVE_MARGIN.as_millis() as i64);
    let queued = resolve_when_allowed(&h, sub.id(), txn_ts + 1).await;
    assert_eq!(queued, 2, "both regions lag");
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(log.rows, 6, "three async-commit rows and three 1PC rows");
    h.stop().await;
}

/// An async-commit transaction abandoned before its secondary was prewritten: the secondary's
/// check finds it missing (TiKV then writes a rollback there), so the transaction is rolled
/// back, nothing is delivered, the resolved ts moves, and the late prewrite fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_commit_transaction_missing_a_secondary_is_rolled_back() {
    let h = start_with(two_region_cluster(), manual_resolution).await;
    let (span, start_ts, mut sub, mut log) = watching_table_100(&h).await;
    let txn = [put(10, "primary"), put(70, "never prewritten")];
    let txn_ts = h.cluster.begin();
    h.cluster.prewrite_part(txn_ts, &txn, &[0], 100, true).unwrap();
    h.cluster.advance_tso(2 * LOCK_RESOLVE_MARGIN.as_millis() as i64);
    let queued = resolve_when_allowed(&h, sub.id(), txn_ts + 1).await;
    assert_eq!(queued, 1, "the primary's region lags");
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    assert_eq!(log.rows, 0);
    h.verify(&span, start_ts, &log);
    let late = h.cluster.prewrite_part(txn_ts, &txn, &[1], 100, true);
    assert!(matches!(late, Err(TxnError::TxnNotFound { .. })), "{late:?}");
    h.stop().await;
}

/// A subscriber that reads its subscriptions one at a time. With one shared quota the unread
/// subscription fills it and its worker waits, the read one's rows with it (a deadlock: the
/// subscriber waits for the read one). With subscription quotas the unread one's region steps
/// aside, the read one is read to the end, and then the unread one catches up with nothing
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_quotas_keep_an_unread_subscription_from_stalling_the_others() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |config| {
            // One worker: both subscriptions' registrations of the one region are on it.
            config.worker_count = 1;
            config.memory_quota = 1 << 20;
            config.subscription_quota = Some(64 << 10);
        },
    )
    .await;
    let start_ts = h.cluster.now_ts();
    let mut unread = h.client.subscribe(table_span(100), start_ts).await.expect("subscribe");
    let mut read = h.client.subscribe(table_span(101), start_ts).await.expect("subscribe");
    // About 1.6 MiB for the unread subscription: more than the whole quota.
    let value = vec![b'v'; 1024];
    for handle in 0..1500 {
        let row = Mutation::put(record_key(100, handle), value.clone());
        h.cluster.commit_2pc(&[row]).expect("commit");
    }
    let mut last = 0;
    for handle in 0..100 {
        let row = Mutation::put(record_key(101, handle), "x");
        last = h.cluster.commit_2pc(&[row]).expect("commit").1;
    }
    let mut log_read = Log::default();
    log_read.until_resolved(&mut read, last).await;
    assert!(error_count(&h.client, "SubscriptionQuota") > 0, "the unread subscription paused");
    let mut log_unread = Log::default();
    log_unread.until_resolved(&mut unread, last).await;
    assert!(log_unread.rows >= 1500, "{} rows", log_unread.rows);
    h.verify(&table_span(101), start_ts, &log_read);
    h.verify(&table_span(100), start_ts, &log_unread);
    drop((read, unread));
    h.stop().await;
}

/// The GC safe point is held at what the subscriber read, not at what the client published: a
/// subscriber that stops reading (a slow sink, a process about to be killed) keeps the history
/// it will resume from, however far the published resolved ts runs ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_point_stays_at_what_the_subscriber_read() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |config| {
            config.gc_service_name = Some("reader-test".to_owned());
            config.gc_refresh = Duration::from_millis(50);
        },
    )
    .await;
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(table_span(100), start_ts).await.expect("subscribe");
    workload(3, 20).run(&h.cluster, 50, 0).await;
    let target = h.cluster.now_ts();
    // Published far ahead, read nothing; then refreshes go by.
    eventually("published past the writes", || {
        h.client.stats(sub.id()).is_some_and(|stats| stats.published_ts >= target)
    })
    .await;
    let calls = h.cluster.pd_calls().gc_calls;
    eventually("refreshes", || h.cluster.pd_calls().gc_calls >= calls + 3).await;
    assert_eq!(service_point(&h.cluster, "kvfeed-reader-test"), Some(start_ts));
    // Once read, it follows.
    let mut log = Log::default();
    log.until_resolved(&mut sub, target).await;
    eventually("the safe point follows the reader", || {
        service_point(&h.cluster, "kvfeed-reader-test").is_some_and(|sp| sp >= target)
    })
    .await;
    h.stop().await;
}

/// A consumer's own hold (`Client::hold_gc`) keeps the safe point below its subscriptions'
/// checkpoints until it advances; GC with a life time of zero never passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_hold_keeps_the_safe_point_until_it_advances() {
    let h = start_with(
        ClusterConfig { stores: 1, resolved_ts_interval: Some(TICK), ..ClusterConfig::default() },
        |config| {
            config.gc_service_name = Some("hold-test".to_owned());
            config.gc_refresh = Duration::from_millis(50);
        },
    )
    .await;
    let service = "kvfeed-hold-test";
    let held_at = h.cluster.now_ts();
    let mut hold = h.client.hold_gc(held_at).await.expect("hold");
    let mut sub = h.client.subscribe(table_span(100), held_at).await.unwrap();
    workload(3, 20).run(&h.cluster, 40, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    // The subscription's checkpoint moved on; the hold keeps the safe point where it was.
    assert!(sub.checkpoint() > held_at);
    h.cluster.advance_tso(10);
    // Refreshes run every 50 ms: a few get the chance to move the safe point (they must not).
    for _ in 0..3 {
        assert!(h.cluster.run_gc(Duration::ZERO) <= held_at, "GC passed the hold");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(service_point(&h.cluster, service), Some(held_at));
    // A subscription from the held ts is still admitted.
    drop(h.client.subscribe(table_span(100), held_at).await.expect("at the held ts"));
    let moved_to = sub.checkpoint();
    hold.advance(moved_to);
    hold.advance(held_at); // never back
    assert_eq!(hold.ts(), moved_to);
    eventually("the safe point follows the hold", || {
        service_point(&h.cluster, service).is_some_and(|sp| sp > held_at)
    })
    .await;
    assert!(hold.lost().is_none());
    drop(hold);
    drop(sub);
    h.stop().await;
}
