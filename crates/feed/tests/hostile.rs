//! Hostile stores (design invariant 6, issue "hostile-server tests"): a scripted ChangeData
//! server that speaks the protocol but misbehaves stands in for one store of the simulated
//! cluster (PD advertises its address). Each misbehaviour gets its defined outcome: the event is
//! ignored, or the region is requested again, or the subscription fails with a typed error;
//! never a panic, never a wrong row delivered; and a subscription served by a healthy store is
//! unaffected (checked by the verifier).

mod common;

use bytes::Bytes;
use common::{Harness, Log, TICK, start_with, workload};
use kvfeed::{Event, Subscription};
use kvfeed_proto::cdcpb::{self, ChangeDataRequest, change_data_request, event};
use kvfeed_sim::ClusterConfig;
use kvfeed_span::table::{record_key, record_prefix, table_span};
use kvfeed_span::{EncodedKey, Span};
use kvfeed_testkit::store::{self, Reply, ServerCall, TestStore};

const START_TS: u64 = 1000;

/// A cluster of two stores; the store leading region A (table 100's handles below 100) is
/// replaced by a scripted server; region B (the rest) stays on a healthy store.
struct Setup {
    h: Harness,
    hostile: TestStore,
    /// Subscribes region A's part of table 100 (served by the hostile store).
    victim: Subscription,
    /// Subscribes region B's part of table 100 (healthy).
    bystander: Subscription,
    bystander_span: Span,
    bystander_start: u64,
    /// What the bystander received so far.
    bystander_log: Log,
    region_a: u64,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// [`setup`] with the client's configuration tweaked.
async fn setup_with(tweak: impl FnOnce(&mut kvfeed::Config)) -> Setup {
    let h = start_with(
        ClusterConfig {
            stores: 2,
            replicas: 2,
            split_keys: vec![record_key(100, 100)],
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |config| {
            config.streams_per_store = 1;
            tweak(config);
        },
    )
    .await;
    let a = h.cluster.region_of_raw(&record_key(100, 5)).unwrap();
    let b = h.cluster.region_of_raw(&record_key(100, 150)).unwrap();
    if a.leader_store == b.leader_store {
        let other = b.peers.iter().find(|p| p.store_id != a.leader_store).unwrap().store_id;
        h.cluster.transfer_leader(b.id, other).unwrap();
    }
    let hostile = TestStore::start(true);
    h.cluster.set_store_address(a.leader_store, hostile.address());
    let victim_span = Span::new(
        EncodedKey::encode(&record_prefix(100)),
        EncodedKey::encode(&record_key(100, 100)),
    )
    .unwrap();
    let bystander_span =
        Span::new(EncodedKey::encode(&record_key(100, 100)), table_span(100).end().clone())
            .unwrap();
    let victim = h.client.subscribe(victim_span, START_TS).await.unwrap();
    let bystander_start = h.cluster.now_ts();
    let bystander = h.client.subscribe(bystander_span.clone(), bystander_start).await.unwrap();
    Setup {
        h,
        hostile,
        victim,
        bystander,
        bystander_span,
        bystander_start,
        bystander_log: Log::default(),
        region_a: a.id,
    }
}

impl Setup {
    /// The hostile store's call, and checks its first request registers region A.
    async fn accept(&self) -> ServerCall {
        let call = self.hostile.accept().await;
        assert!(self.is_register(&call.first), "{:?}", call.first);
        call
    }

    fn is_register(&self, request: &ChangeDataRequest) -> bool {
        request.request_id == self.victim.id().get()
            && request.region_id == self.region_a
            && matches!(request.request, Some(change_data_request::Request::Register(_)))
    }

    fn entries(&self, rows: Vec<event::Row>) -> cdcpb::Event {
        self.entries_for(self.victim.id().get(), self.region_a, rows)
    }

    fn entries_for(&self, request_id: u64, region_id: u64, rows: Vec<event::Row>) -> cdcpb::Event {
        cdcpb::Event {
            region_id,
            request_id,
            index: 0,
            event: Some(event::Event::Entries(event::Entries { entries: rows })),
        }
    }

    fn resolved(&self, ts: u64) -> Reply {
        store::resolved(self.victim.id().get(), vec![self.region_a], ts)
    }

    /// Waits for the client to deregister region A and register it again on `call` (answering
    /// the deregistration as TiKV does).
    async fn expect_retry(&self, call: &mut ServerCall) {
        let deregister = call.next_request().await.expect("a request");
        assert!(
            matches!(deregister.request, Some(change_data_request::Request::Deregister(_)))
                && deregister.region_id == self.region_a,
            "{deregister:?}"
        );
        call.send(store::frame(vec![store::region_not_found(
            self.victim.id().get(),
            self.region_a,
        )]))
        .await;
        let register = call.next_request().await.expect("a request");
        assert!(self.is_register(&register), "{register:?}");
    }

    /// The healthy subscription saw a workload through, verified.
    async fn check_bystander(mut self) {
        workload(30, 200).run(&self.h.cluster, 100, 0).await;
        let target = self.h.cluster.now_ts();
        self.bystander_log.until_resolved(&mut self.bystander, target).await;
        self.h.verify(&self.bystander_span, self.bystander_start, &self.bystander_log);
        self.h.stop().await;
    }
}

fn row(kind: event::LogType, key: &[u8], start_ts: u64, commit_ts: u64) -> event::Row {
    event::Row {
        start_ts,
        commit_ts,
        r#type: kind as i32,
        op_type: event::row::OpType::Put as i32,
        key: Bytes::copy_from_slice(key),
        value: Bytes::from_static(b"value"),
        ..event::Row::default()
    }
}

fn initialized() -> event::Row {
    event::Row { r#type: event::LogType::Initialized as i32, ..event::Row::default() }
}

/// The victim's next event, which must arrive.
async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(common::DEADLINE, sub.recv())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("no failure")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_outside_the_region_are_dropped() {
    let mut s = setup().await;
    let call = s.accept().await;
    let outside = row(event::LogType::Committed, &record_key(100, 150), 1001, 1002);
    call.send(store::frame(vec![s.entries(vec![outside, initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000), "no row before it");
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_prewrite_after_the_scan_retries_the_region() {
    let mut s = setup().await;
    let mut call = s.accept().await;
    let commit = row(event::LogType::Commit, &record_key(100, 5), 1001, 1002);
    call.send(store::frame(vec![s.entries(vec![initialized(), commit])])).await;
    s.expect_retry(&mut call).await;
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(3000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(3000), "the commit was not delivered");
    s.check_bystander().await;
}

/// Issue 18 item 2: a row that cannot be interpreted and comes back on every re-scan fails the
/// subscription after `bad_row_attempts` (3) attempts, with a typed error naming the region and
/// the row's problem; the other subscription goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_on_every_attempt_fails_the_subscription() {
    let mut s = setup().await;
    let mut call = s.accept().await;
    let mut bad = row(event::LogType::Committed, &record_key(100, 5), 1001, 1002);
    bad.op_type = 7;
    for attempt in 1..=3 {
        call.send(store::frame(vec![s.entries(vec![bad.clone(), initialized()])])).await;
        if attempt < 3 {
            s.expect_retry(&mut call).await;
        }
    }
    let failure = tokio::time::timeout(common::DEADLINE, s.victim.recv())
        .await
        .expect("the subscription ends in time")
        .expect("with an error");
    match failure {
        Err(kvfeed::Error::BadRow { region_id, attempts, error }) => {
            assert_eq!((region_id, attempts), (s.region_a, 3));
            assert!(matches!(error, kvfeed::RowError::UnknownOp { op: 7, .. }), "{error:?}");
        }
        other => panic!("expected a bad-row failure, got {other:?}"),
    }
    assert!(tokio::time::timeout(common::DEADLINE, s.victim.recv()).await.unwrap().is_none());
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_at_or_below_the_published_resolved_ts_is_refused() {
    let mut s = setup().await;
    let mut call = s.accept().await;
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    let late = row(event::LogType::Committed, &record_key(100, 5), 1500, 2000);
    call.send(store::frame(vec![s.entries(vec![late])])).await;
    s.expect_retry(&mut call).await;
    // The region comes back from its resolved ts: a row above it is delivered.
    let fresh = row(event::LogType::Committed, &record_key(100, 6), 2100, 2200);
    call.send(store::frame(vec![s.entries(vec![fresh, initialized()])])).await;
    call.send(s.resolved(2500)).await;
    match next(&mut s.victim).await {
        Event::Row(row) => assert_eq!((row.start_ts, row.commit_ts), (2100, 2200)),
        other => panic!("expected the fresh row, got {other:?}"),
    }
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2500));
    s.check_bystander().await;
}

/// Issue 18 item 8: a resolved ts far ahead of PD's clock (u64::MAX) is neither applied nor
/// published; the region is requested again, and rows keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_ts_far_ahead_of_pd_is_refused_and_the_region_retried() {
    let mut s = setup().await;
    let mut call = s.accept().await;
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    call.send(s.resolved(u64::MAX)).await;
    s.expect_retry(&mut call).await;
    assert_eq!(s.h.client.resolved_ts(s.victim.id()), Some(2000), "not applied");
    let fresh = row(event::LogType::Committed, &record_key(100, 6), 2100, 2200);
    call.send(store::frame(vec![s.entries(vec![fresh, initialized()])])).await;
    call.send(s.resolved(2500)).await;
    match next(&mut s.victim).await {
        Event::Row(row) => assert_eq!((row.start_ts, row.commit_ts), (2100, 2200)),
        other => panic!("expected the fresh row, got {other:?}"),
    }
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2500));
    let text = s.h.client.metrics_text();
    assert!(
        text.contains("kvfeed_kvclient_event_feed_error_count{type=\"ResolvedTsAhead\"} 1"),
        "counted once"
    );
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decreasing_resolved_ts_is_ignored() {
    let mut s = setup().await;
    let call = s.accept().await;
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    call.send(s.resolved(1500)).await;
    call.send(s.resolved(2500)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2500));
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_with_no_known_field_retries_the_region() {
    let mut s = setup().await;
    let mut call = s.accept().await;
    let error = cdcpb::Event {
        region_id: s.region_a,
        request_id: s.victim.id().get(),
        index: 0,
        event: Some(event::Event::Error(cdcpb::Error::default())),
    };
    call.send(store::frame(vec![error])).await;
    let register = call.next_request().await.expect("a request");
    assert!(s.is_register(&register), "{register:?}");
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_unknown_requests_and_regions_are_ignored() {
    let mut s = setup().await;
    let call = s.accept().await;
    let key = record_key(100, 5);
    let stray = |request, region| {
        s.entries_for(request, region, vec![row(event::LogType::Committed, &key, 1001, 1002)])
    };
    let victim = s.victim.id().get();
    call.send(store::frame(vec![stray(victim + 100, s.region_a), stray(victim, 424_242)])).await;
    call.send(store::resolved(victim + 100, vec![s.region_a], 9000)).await;
    let good = row(event::LogType::Committed, &key, 1003, 1004);
    call.send(store::frame(vec![s.entries(vec![good, initialized()])])).await;
    call.send(s.resolved(2000)).await;
    match next(&mut s.victim).await {
        Event::Row(row) => assert_eq!((row.start_ts, row.commit_ts), (1003, 1004)),
        other => panic!("expected the good row, got {other:?}"),
    }
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    s.check_bystander().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_frames_fail_the_stream_and_the_region_comes_back() {
    let mut s = setup().await;
    let call = s.accept().await;
    call.send(Reply::Raw(Bytes::from_static(b"\xff\xff\xff\xff garbage"))).await;
    let call = s.accept().await; // a new stream, the region registered again
    let whole = store::encoded(vec![s.entries(vec![initialized()])]);
    call.send(Reply::Raw(whole.slice(..whole.len() - 1))).await;
    let call = s.accept().await;
    call.send(store::frame(vec![s.entries(vec![initialized()])])).await;
    call.send(s.resolved(2000)).await;
    assert_eq!(next(&mut s.victim).await, Event::Resolved(2000));
    s.check_bystander().await;
}

/// Issue 18 item 4: a store that accepts the register and never answers holds back only its
/// subscription, and only until the stuck timeout: then the region is deregistered and
/// registered again; unsubscribing still drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_answers_is_asked_again_and_holds_back_only_its_subscription() {
    let mut s = setup_with(|config| {
        config.region_stuck_timeout = Some(std::time::Duration::from_millis(300))
    })
    .await;
    let mut call = s.accept().await;
    let victim = s.victim.id();
    workload(31, 200).run(&s.h.cluster, 50, 0).await;
    let target = s.h.cluster.now_ts();
    s.bystander_log.until_resolved(&mut s.bystander, target).await;
    assert_eq!(s.h.client.region_count(victim), 1);
    assert_eq!(s.h.client.resolved_ts(victim), Some(START_TS), "nothing resolved");
    assert!(s.victim.try_recv().is_none());
    // Silent past the timeout: the region is given up on and registered again.
    s.expect_retry(&mut call).await;
    // Unsubscribing still drains: the silent store is sent a Deregister.
    s.h.client.unsubscribe(victim);
    let deregister = call.next_request().await.expect("a request");
    assert!(
        matches!(deregister.request, Some(change_data_request::Request::Deregister(_)))
            && deregister.request_id == victim.get(),
        "{deregister:?}"
    );
    assert!(tokio::time::timeout(common::DEADLINE, s.victim.recv()).await.unwrap().is_none());
    s.check_bystander().await;
}
