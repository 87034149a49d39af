//! The client against the simulated cluster: a single region, many regions over several
//! stores, two overlapping subscriptions, and a 40 MiB row.

mod common;

use common::{Log, start, workload};
use kvfeed_sim::Mutation;
use kvfeed_span::table::{record_key, table_span};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_region_delivers_every_commit_and_resolves() {
    let h = start(1, &[]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut log = Log::default();
    let mut load = workload(1, 200);
    load.run(&h.cluster, 300, 0).await;
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    let report = h.verify(&span, start_ts, &log);
    assert!(report.expected > 300, "the workload wrote rows: {report:?}");
    assert_eq!(h.client.region_count(sub.id()), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_before_the_start_ts_are_not_delivered_and_the_scan_is_complete() {
    let h = start(3, &[100, 200, 300]).await;
    let span = table_span(100);
    let mut load = workload(2, 400);
    load.run(&h.cluster, 200, 0).await;
    // Subscribe from the middle of the history: the incremental scan delivers what was
    // committed after the start ts, and nothing before.
    let start_ts = h.cluster.now_ts();
    load.run(&h.cluster, 200, 0).await;
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    load.run(&h.cluster, 200, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(h.client.region_count(sub.id()), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_regions_over_several_stores() {
    let splits: Vec<i64> = (1..64).map(|i| i * 16).collect();
    let h = start(5, &splits).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let mut load = workload(3, 1024);
    load.run(&h.cluster, 500, 0).await;
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    h.verify(&span, start_ts, &log);
    assert_eq!(h.client.region_count(sub.id()), 64);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_each_get_their_own_span() {
    let h = start(3, &[50, 150]).await;
    let whole = table_span(100);
    let part = kvfeed_span::Span::new(
        kvfeed_span::EncodedKey::encode(&record_key(100, 100)),
        kvfeed_span::EncodedKey::encode(&record_key(100, 180)),
    )
    .unwrap();
    let start_ts = h.cluster.now_ts();
    let mut a = h.client.subscribe(whole.clone(), start_ts).await.unwrap();
    let mut b = h.client.subscribe(part.clone(), start_ts).await.unwrap();
    assert_ne!(a.id(), b.id());
    workload(4, 200).run(&h.cluster, 300, 0).await;
    let target = h.cluster.now_ts();
    let (mut log_a, mut log_b) = (Log::default(), Log::default());
    log_a.until_resolved(&mut a, target).await;
    log_b.until_resolved(&mut b, target).await;
    h.verify(&whole, start_ts, &log_a);
    let report = h.verify(&part, start_ts, &log_b);
    assert!(report.expected > 0 && report.expected < log_a.rows);
    assert_eq!(h.client.region_count(b.id()), 2, "[100, 180) lies in two regions");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_mib_row_arrives() {
    let h = start(1, &[]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    let big = vec![b'x'; 40 << 20];
    h.cluster.commit_2pc(&[Mutation::put(record_key(100, 1), big)]).unwrap();
    h.cluster.commit_1pc(&[Mutation::put(record_key(100, 2), vec![b'y'; 40 << 20])]).unwrap();
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    let report = h.verify(&span, start_ts, &log);
    assert_eq!(report.expected, 2);
    h.stop().await;
}

/// Backpressure: a subscriber that stops reading holds at most the memory quota in the client;
/// once it reads again, everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_the_quota_and_loses_nothing() {
    const QUOTA: usize = 256 << 10;
    let h = common::start_with(
        kvfeed_sim::ClusterConfig {
            stores: 2,
            split_keys: vec![record_key(100, 500)],
            resolved_ts_interval: Some(common::TICK),
            ..kvfeed_sim::ClusterConfig::default()
        },
        |config| config.memory_quota = QUOTA,
    )
    .await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    // Nobody reads while 4 MiB of rows (1 KiB values) are written.
    let mut peak = 0;
    for batch in 0..64i64 {
        let mutations: Vec<Mutation> = (0..64)
            .map(|i| Mutation::put(record_key(100, (batch * 64 + i) % 1000), vec![b'x'; 1024]))
            .collect();
        h.cluster.commit_2pc(&mutations).unwrap();
        peak = peak.max(h.client.buffered_bytes());
        assert!(h.client.buffered_bytes() <= QUOTA);
    }
    common::eventually("the quota fills up", || h.client.buffered_bytes() > QUOTA / 2).await;
    for _ in 0..20 {
        peak = peak.max(h.client.buffered_bytes());
        assert!(h.client.buffered_bytes() <= QUOTA, "buffered beyond the quota");
        tokio::time::sleep(common::TICK).await;
    }
    assert!(peak <= QUOTA && peak > QUOTA / 2, "memory plateaus at the quota: peak {peak}");
    let mut log = Log::default();
    log.until_resolved(&mut sub, h.cluster.now_ts()).await;
    let report = h.verify(&span, start_ts, &log);
    assert_eq!(report.expected, 64 * 64);
    assert_eq!(h.client.buffered_bytes(), 0, "everything read, nothing held");
    h.stop().await;
}

/// A configuration whose store version range admits no version is refused before anything
/// connects.
#[tokio::test]
async fn a_config_admitting_no_store_version_is_refused() {
    let mut config = kvfeed::Config::new(["127.0.0.1:1"]);
    let (low, high) = (kvfeed::TikvVersion::new(8, 0, 0), kvfeed::TikvVersion::new(9, 0, 0));
    config.store_versions = Some(high..low);
    let error = kvfeed::Client::connect(config).await.unwrap_err();
    assert!(matches!(&error, kvfeed::Error::Config(m) if m.contains("store_versions")), "{error}");
}

/// Memory settings a client cannot work with are refused before PD is asked: a subscription
/// quota of 0 or beyond the quota's part for delivered rows, a spill directory that cannot hold
/// files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_memory_settings_are_refused() {
    let refused = |tweak: fn(&mut kvfeed::Config), what: &'static str| async move {
        let mut config = kvfeed::Config::new(["127.0.0.1:1"]);
        tweak(&mut config);
        let error = kvfeed::Client::connect(config).await.unwrap_err();
        assert!(matches!(&error, kvfeed::Error::Config(m) if m.contains(what)), "{error}");
    };
    refused(|config| config.subscription_quota = Some(0), "subscription_quota").await;
    refused(|config| config.subscription_quota = Some(config.memory_quota), "subscription_quota")
        .await;
    refused(
        |config| config.spill_dir = Some(std::env::temp_dir().join("kvfeed-no-such-dir")),
        "spill_dir",
    )
    .await;
}

/// A span whose bounds are raw keys (not memcomparable-encoded) is refused with a typed error;
/// unbounded ends are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_of_raw_keys_is_refused() {
    let h = start(1, &[]).await;
    let raw = kvfeed_span::Span::from_bytes(b"t\x80", b"t\x81").unwrap();
    match h.client.subscribe(raw, h.cluster.now_ts()).await {
        Err(kvfeed::Error::InvalidSpan(reason)) => assert!(reason.contains("start"), "{reason}"),
        other => panic!("expected InvalidSpan, got {other:?}"),
    }
    let encoded_start = kvfeed_span::EncodedKey::encode(b"t");
    let half_raw =
        kvfeed_span::Span::new(encoded_start, kvfeed_span::EncodedKey::from_encoded(b"u"));
    match h.client.subscribe(half_raw.unwrap(), h.cluster.now_ts()).await {
        Err(kvfeed::Error::InvalidSpan(reason)) => assert!(reason.contains("end"), "{reason}"),
        other => panic!("expected InvalidSpan, got {other:?}"),
    }
    let unbounded = h.client.subscribe(kvfeed_span::Span::full(), h.cluster.now_ts()).await;
    assert!(unbounded.is_ok(), "an unbounded span is encoded by definition");
    h.stop().await;
}

/// The subscription is a `futures_core::Stream` whose items are those of `recv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_is_a_stream() {
    use futures_core::Stream;
    let h = start(1, &[]).await;
    let span = table_span(100);
    let start_ts = h.cluster.now_ts();
    let mut sub = h.client.subscribe(span.clone(), start_ts).await.unwrap();
    h.cluster.commit_2pc(&[Mutation::put(record_key(100, 1), b"v".to_vec())]).unwrap();
    let target = h.cluster.now_ts();
    let mut rows = 0;
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut sub).poll_next(cx));
        let event = tokio::time::timeout(common::DEADLINE, next).await.expect("an event in time");
        match event.expect("the stream goes on").expect("no failure") {
            kvfeed::Event::Row(row) => {
                assert_eq!(row.key.as_ref(), record_key(100, 1).as_slice());
                rows += 1;
            }
            kvfeed::Event::Resolved(ts) if ts >= target => break,
            kvfeed::Event::Resolved(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(rows, 1);
    h.stop().await;
}
