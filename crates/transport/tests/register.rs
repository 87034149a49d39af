//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! Registration over `EventFeedV2`: one multiplexed stream per store, the header on every request,
//! Register and Deregister (and re-registering on the same stream), events routed to the
//! registrations they belong to, round-robin over a store's streams, `DuplicateRequest`, and
//! requests refused before anything is sent.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    CLUSTER_ID, config, failures, is_deregister, is_register, next_event, next_event_or_marker,
    region, target,
};
use kvfeed_proto::cdcpb::{self};
use kvfeed_span::EncodedKey;
use kvfeed_testkit::store::{Method, Reply, TestStore, frame, region_not_found, resolved, rows};
use kvfeed_transport::{
    Keepalive, RegionError, RegionEvent, RowKind, StoreTarget, StreamError, StreamEvent, Transport,
    TransportConfig, TransportError,
};

#[tokio::test]
async fn v2_stream_multiplexes_subscriptions_and_sends_headers() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    assert_eq!(call.method, Method::V2);
    assert_eq!(call.features.as_deref(), Some("stream-multiplexing"));
    assert!(is_register(&call.first, 1, 10));
    let first = &call.first;
    assert_eq!(
        first.region_epoch,
        Some(kvfeed_proto::metapb::RegionEpoch { conf_ver: 1, version: 3 })
    );
    assert_eq!(first.checkpoint_ts, 400);
    assert_eq!(first.start_key.as_ref(), EncodedKey::encode(b"a").as_bytes());
    assert_eq!(first.end_key.as_ref(), EncodedKey::encode(b"z").as_bytes());
    assert_eq!(first.extra_op, kvfeed_proto::kvrpcpb::ExtraOp::ReadOldValue as i32);
    assert!(!first.filter_loop);

    // A second subscription shares the multiplexed call.
    transport.register(&tikv, region(2, 20)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 2, 20));
    assert_eq!(store.counters.probes.load(Ordering::SeqCst), 1);

    // One frame mixing both subscriptions, then a batch per subscription.
    call.send(frame(vec![rows(1, 10, 2, 8), rows(2, 20, 1, 8)])).await;
    call.send(resolved(2, vec![20], 500)).await;
    let StreamEvent::Region {
        store_id: 1,
        request_id: 1,
        region_id: 10,
        event: RegionEvent::Rows(got),
    } = next_event(&mut events).await
    else {
        panic!("rows of (1, 10) first");
    };
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, RowKind::Committed);
    assert_eq!(&got[1].key[..], b"key-10-000001");
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { request_id: 2, region_id: 20, event: RegionEvent::Rows(_), .. }
    ));
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Resolved { store_id: 1, request_id: 2, regions: vec![20], ts: 500 }
    );

    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!((stats.connections, stats.multiplexed_streams, stats.regions), (1, 1, 2));

    // Deregister one region, then a whole subscription: real Deregisters with headers.
    transport.deregister(1, 1, Some(10)).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 10));
    transport.deregister(1, 2, None).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 2, 0));
    assert_eq!(transport.store_stats(1).await.unwrap().regions, 0);
    // TiKV answers with RegionNotFound per removed region: those answers end the old
    // registrations and are swallowed; the rows of a live region after them come first.
    transport.register(&tikv, region(3, 30)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 3, 30));
    call.send(frame(vec![region_not_found(1, 10), region_not_found(2, 20), rows(3, 30, 1, 4)]))
        .await;
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { request_id: 3, region_id: 30, event: RegionEvent::Rows(_), .. }
    ));

    // The stream ending reports only the live region: deregistered ones are never reported.
    // Its report also shows the session ended, so the next registration opens a new call.
    drop(call);
    assert_eq!(failures(&mut events, 1).await, vec![(3, 30, StreamError::Eof)]);
    transport.register(&tikv, region(4, 40)).await.unwrap();
    let call = store.accept().await;
    assert!(is_register(&call.first, 4, 40));
    assert!(events.try_recv().is_none(), "deregistered regions are never reported failed");
}

#[tokio::test]
async fn deregister_then_register_again_on_the_same_stream() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    for region_id in [20, 21] {
        transport.register(&tikv, region(2, region_id)).await.unwrap();
        assert!(is_register(&call.next_request().await.unwrap(), 2, region_id));
    }

    // One region, then a whole subscription (region id 0), each registered again at once.
    transport.deregister(1, 1, Some(10)).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 10));
    transport.register(&tikv, region(1, 10)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 1, 10));
    transport.deregister(1, 2, None).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 2, 0));
    transport.register(&tikv, region(2, 20)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 2, 20));

    // TiKV handles requests in order: the old registrations' events (rows, a resolved batch)
    // and their one ending error each come first. All of that is dropped.
    call.send(resolved(1, vec![10], 450)).await;
    call.send(resolved(2, vec![20, 21], 450)).await;
    call.send(frame(vec![rows(1, 10, 1, 4), region_not_found(1, 10)])).await;
    call.send(frame(vec![
        rows(2, 20, 1, 4),
        rows(2, 21, 1, 4),
        region_not_found(2, 21),
        region_not_found(2, 20),
    ]))
    .await;
    // Then the new registrations' events, which reach the feed.
    call.send(frame(vec![rows(1, 10, 3, 4), rows(2, 20, 2, 4)])).await;
    call.send(resolved(2, vec![20, 21], 600)).await;
    let StreamEvent::Region { request_id: 1, region_id: 10, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("the new registration's rows of (1, 10) first");
    };
    assert_eq!(got.len(), 3);
    let StreamEvent::Region { request_id: 2, region_id: 20, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("then those of (2, 20)");
    };
    assert_eq!(got.len(), 2);
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Resolved { store_id: 1, request_id: 2, regions: vec![20], ts: 600 }
    );
    assert_eq!(transport.store_stats(1).await.unwrap().regions, 2);

    // The new registrations are still tracked: a failure reports each exactly once.
    call.send(Reply::Fail(tonic::Status::unavailable("reset"))).await;
    let failed = failures(&mut events, 2).await;
    assert_eq!(
        failed.iter().map(|(request, region, _)| (*request, *region)).collect::<Vec<_>>(),
        vec![(1, 10), (2, 20)]
    );
    assert_eq!(call.next_request().await, None);
    assert!(events.try_recv().is_none(), "every region was reported exactly once");
}

/// Issue 18 item 10: a pair whose deregistration TiKV never answered, registered again after
/// `drain_timeout`, resets the stream (its other regions fail with `DrainTimeout`) and goes on a
/// new one, instead of having the new registration's events dropped forever.
#[tokio::test]
async fn a_registration_that_never_drains_resets_the_stream() {
    let store = TestStore::start(true);
    let config = TransportConfig { drain_timeout: Duration::ZERO, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    transport.register(&tikv, region(1, 11)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 1, 11));
    transport.deregister(1, 1, Some(10)).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 10));
    assert!(matches!(
        next_event_or_marker(&mut events).await,
        StreamEvent::Deregistered { request_id: 1, region_id: 10, .. }
    ));
    // TiKV stays silent about the old registration; the region comes back.
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let failed = failures(&mut events, 1).await;
    assert_eq!(failed, vec![(1, 11, StreamError::DrainTimeout)]);
    let fresh = store.accept().await;
    assert!(is_register(&fresh.first, 1, 10), "{:?}", fresh.first);
    assert_eq!(call.next_request().await, None, "the old stream is closed");
    fresh.send(frame(vec![rows(1, 10, 2, 4)])).await;
    let StreamEvent::Region { request_id: 1, region_id: 10, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("the new registration's rows arrive");
    };
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn events_of_untracked_pairs_are_dropped_and_batches_filtered() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    // Events of another region of the subscription, the region under another subscription, a region error
    // of an unknown pair, and batches naming unknown pairs.
    call.send(frame(vec![rows(1, 99, 1, 4), rows(5, 10, 1, 4), region_not_found(1, 98)])).await;
    call.send(resolved(1, vec![99, 10, 98], 500)).await;
    call.send(resolved(7, vec![10], 500)).await;
    call.send(resolved(1, vec![99], 500)).await;
    call.send(frame(vec![rows(1, 10, 1, 4)])).await;
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Resolved { store_id: 1, request_id: 1, regions: vec![10], ts: 500 }
    );
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { request_id: 1, region_id: 10, event: RegionEvent::Rows(_), .. }
    ));
    // A tracked pair's error still arrives typed (an empty leader peer means "unknown") and
    // ends the registration: the stream ending later reports nothing.
    let not_leader = cdcpb::Event {
        region_id: 10,
        request_id: 1,
        index: 0,
        event: Some(cdcpb::event::Event::Error(cdcpb::Error {
            not_leader: Some(kvfeed_proto::errorpb::NotLeader {
                region_id: 10,
                leader: Some(kvfeed_proto::metapb::Peer::default()),
            }),
            ..cdcpb::Error::default()
        })),
    };
    call.send(frame(vec![not_leader])).await;
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Region {
            store_id: 1,
            request_id: 1,
            region_id: 10,
            event: RegionEvent::Error(RegionError::NotLeader { leader: None }),
        }
    );
    // A region error for the now untracked pair is dropped too: the rows of a region registered
    // after it come next.
    transport.register(&target(1, &store), region(2, 20)).await.unwrap();
    let mut call = call;
    assert!(is_register(&call.next_request().await.unwrap(), 2, 20));
    call.send(frame(vec![region_not_found(1, 10), rows(1, 10, 1, 4), rows(2, 20, 1, 4)])).await;
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { request_id: 2, region_id: 20, event: RegionEvent::Rows(_), .. }
    ));
    // The stream ending reports only (2, 20): TiKV ended (1, 10) itself.
    drop(call);
    assert_eq!(failures(&mut events, 1).await, vec![(2, 20, StreamError::Eof)]);
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn regions_are_spread_round_robin_over_the_store_streams() {
    let store = TestStore::start(true);
    let config = TransportConfig { streams_per_store: 3, ..config() };
    let (transport, _events) = Transport::new(config, CLUSTER_ID).unwrap();
    for region_id in 1..=6 {
        transport.register(&target(1, &store), region(1, region_id)).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut call = store.accept().await;
        let second = call.next_request().await.unwrap();
        seen.push((call.first.region_id, second.region_id));
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![(1, 4), (2, 5), (3, 6)]);
    let stats = transport.store_stats(1).await.unwrap();
    // One probe, one connection carrying the three calls.
    assert_eq!((stats.connections, stats.multiplexed_streams, stats.regions), (1, 3, 6));
    assert_eq!(store.counters.probes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_deregistration_marker_follows_every_event_of_the_old_registration() {
    let tikv = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    transport.register(&target(1, &tikv), region(1, 10)).await.unwrap();
    let call = tikv.accept().await;
    // Rows of the registration, still in flight when it is deregistered.
    call.send(frame(vec![rows(1, 10, 4, 8)])).await;
    call.send(frame(vec![rows(1, 10, 4, 8)])).await;
    let first = next_event_or_marker(&mut events).await;
    assert!(matches!(first, StreamEvent::Region { event: RegionEvent::Rows(_), .. }), "{first:?}");
    transport.deregister(1, 1, Some(10)).await;
    // Whatever of the old registration was admitted comes before the marker; nothing after it.
    loop {
        match next_event_or_marker(&mut events).await {
            StreamEvent::Deregistered { store_id: 1, request_id: 1, region_id: 10 } => break,
            StreamEvent::Region { request_id: 1, region_id: 10, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    call.send(frame(vec![rows(1, 10, 4, 8), region_not_found(1, 10)])).await;
    transport.register(&target(1, &tikv), region(1, 10)).await.unwrap();
    call.send(frame(vec![rows(1, 10, 2, 8)])).await;
    let StreamEvent::Region { event: RegionEvent::Rows(got), .. } =
        next_event_or_marker(&mut events).await
    else {
        panic!("the new registration's rows");
    };
    assert_eq!(got.len(), 2, "the old registration's late rows were dropped");
}

#[tokio::test]
async fn duplicate_request_keeps_the_registration_alive() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    transport.register(&tikv, region(1, 10)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 1, 10));
    let duplicate = cdcpb::Event {
        region_id: 10,
        request_id: 1,
        index: 0,
        event: Some(cdcpb::event::Event::Error(cdcpb::Error {
            duplicate_request: Some(cdcpb::DuplicateRequest { region_id: 10 }),
            ..cdcpb::Error::default()
        })),
    };
    call.send(frame(vec![duplicate])).await;
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { event: RegionEvent::Error(RegionError::DuplicateRequest), .. }
    ));
    // The original registration is still tracked, so a failure still reports it (once).
    drop(call);
    let failed = failures(&mut events, 1).await;
    assert_eq!(failed, vec![(1, 10, StreamError::Eof)]);
}

#[tokio::test]
async fn invalid_requests_and_addresses_are_typed_errors() {
    let (transport, _events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let store = StoreTarget { store_id: 1, address: "127.0.0.1:1".to_owned() };
    let error = transport.register(&store, region(1, 0)).await.unwrap_err();
    assert!(matches!(error, TransportError::InvalidRequest(_)));
    let bad = StoreTarget { store_id: 1, address: "not a uri at all".to_owned() };
    let error = transport.register(&bad, region(1, 1)).await.unwrap_err();
    assert!(matches!(error, TransportError::InvalidAddress { .. }), "{error}");
    let tls = kvfeed_transport::TlsConfig {
        ca_file: "/nonexistent/ca.pem".into(),
        client_identity: None,
        domain_name: None,
    };
    let error =
        Transport::new(TransportConfig { tls: Some(tls), ..config() }, CLUSTER_ID).unwrap_err();
    assert!(matches!(error, TransportError::Tls { .. }), "{error}");
    // Keep `Keepalive` in the public API exercised.
    let _ = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(1) };
}

/// Issue 18 item 10: a store nothing uses any more (its streams closed for idleness, no dial or
/// backoff under way) is forgotten; one with a registered region is kept; a store forgotten is
/// dialled anew when asked for again.
#[tokio::test]
async fn idle_stores_are_forgotten() {
    let store = TestStore::start(true);
    let config = TransportConfig { idle_timeout: Duration::from_millis(20), ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    assert_eq!(transport.forget_idle_stores(), 0, "a store with a registered region is kept");
    transport.deregister(1, 1, Some(10)).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 10));
    assert!(matches!(
        next_event_or_marker(&mut events).await,
        StreamEvent::Deregistered { request_id: 1, region_id: 10, .. }
    ));
    // The stream, empty, closes after its idle timeout; then the store is idle.
    assert_eq!(call.next_request().await, None, "the idle stream closes");
    tokio::time::timeout(Duration::from_secs(30), async {
        while transport.forget_idle_stores() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the idle store is forgotten");
    assert!(transport.stores().is_empty());
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let fresh = store.accept().await;
    assert!(is_register(&fresh.first, 1, 10));
    assert_eq!(transport.stores(), vec![1]);
}
