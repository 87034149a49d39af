//! The transport over real loopback gRPC, against the ChangeData servers of `support`.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, ChangeDataEvent, change_data_request};
use kvfeed_span::{EncodedKey, Span};
use kvfeed_transport::{
    Backoff, Keepalive, RegionEpoch, RegionError, RegionEvent, RegisterRequest, RowKind,
    StoreTarget, StreamError, StreamEvent, Transport, TransportConfig, TransportError,
};
use support::{
    Method, PATIENCE, Reply, TestStore, frame, next_event, next_event_or_marker, region_not_found,
    resolved, rows,
};

const CLUSTER_ID: u64 = 6_800_000_000_001;

fn config() -> TransportConfig {
    TransportConfig {
        streams_per_store: 1,
        backoff: Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(4) },
        ..TransportConfig::default()
    }
}

fn target(store_id: u64, store: &TestStore) -> StoreTarget {
    StoreTarget { store_id, address: store.address() }
}

fn region(request_id: u64, region_id: u64) -> RegisterRequest {
    RegisterRequest {
        request_id,
        region_id,
        epoch: RegionEpoch { conf_ver: 1, version: 3 },
        span: Span::new(EncodedKey::encode(b"a"), EncodedKey::encode(b"z")).unwrap(),
        checkpoint_ts: 400,
    }
}

fn is_register(request: &cdcpb::ChangeDataRequest, request_id: u64, region_id: u64) -> bool {
    request.request_id == request_id
        && request.region_id == region_id
        && matches!(request.request, Some(change_data_request::Request::Register(_)))
        && request
            .header
            .as_ref()
            .is_some_and(|h| h.cluster_id == CLUSTER_ID && h.ticdc_version == "8.1.0")
}

fn is_deregister(request: &cdcpb::ChangeDataRequest, request_id: u64, region_id: u64) -> bool {
    request.request_id == request_id
        && request.region_id == region_id
        && matches!(request.request, Some(change_data_request::Request::Deregister(_)))
        && request.header.as_ref().is_some_and(|h| h.cluster_id == CLUSTER_ID)
}

/// Collects `n` `RegionFailed` events, checking nothing else arrives in between.
async fn failures(events: &mut kvfeed_transport::Events, n: usize) -> Vec<(u64, u64, StreamError)> {
    let mut out = Vec::new();
    while out.len() < n {
        match next_event(events).await {
            StreamEvent::RegionFailed { request_id, region_id, cause, .. } => {
                out.push((request_id, region_id, cause));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    out.sort_by_key(|(request, region, _)| (*request, *region));
    out
}

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
async fn v1_region_deregistered_then_registered_again_replaces_the_call() {
    let store = TestStore::start(false);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call_1 = store.accept().await;
    transport.register(&tikv, region(1, 11)).await.unwrap();
    assert!(is_register(&call_1.next_request().await.unwrap(), 1, 11));

    // Forgotten locally; TiKV keeps streaming it on this call: its events are dropped.
    transport.deregister(1, 1, Some(10)).await;
    call_1.send(frame(vec![rows(0, 10, 1, 4)])).await;
    call_1.send(resolved(0, vec![10, 11], 500)).await;
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Resolved { store_id: 1, request_id: 1, regions: vec![11], ts: 500 }
    );

    // Registering it again on this call would be a DuplicateRequest beside a zombie: the call is
    // replaced, its other region reported failed once, and a new call carries the region.
    transport.register(&tikv, region(1, 10)).await.unwrap();
    assert_eq!(failures(&mut events, 1).await, vec![(1, 11, StreamError::Replaced)]);
    assert_eq!(call_1.next_request().await, None, "the old call closed");
    let call_2 = store.accept().await;
    assert_eq!(call_2.method, Method::V1);
    assert!(is_register(&call_2.first, 1, 10));
    call_2.send(frame(vec![rows(0, 10, 2, 4)])).await;
    let StreamEvent::Region { request_id: 1, region_id: 10, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("the new registration's rows");
    };
    assert_eq!(got.len(), 2);
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!((stats.connections, stats.per_subscription_streams, stats.regions), (1, 1, 1));

    // A zombie that TiKV ended is gone: registering it again stays on the call.
    transport.register(&tikv, region(1, 11)).await.unwrap();
    let mut call_2 = call_2;
    assert!(is_register(&call_2.next_request().await.unwrap(), 1, 11));
    transport.deregister(1, 1, Some(11)).await;
    call_2.send(frame(vec![region_not_found(0, 11)])).await;
    call_2.send(frame(vec![rows(0, 10, 1, 4)])).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Region { region_id: 10, .. }));
    transport.register(&tikv, region(1, 11)).await.unwrap();
    assert!(is_register(&call_2.next_request().await.unwrap(), 1, 11));
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
async fn v1_only_store_gets_one_event_feed_call_per_subscription() {
    let store = TestStore::start(false);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call_1 = store.accept().await;
    assert_eq!((call_1.method, call_1.features.as_deref()), (Method::V1, None));
    assert!(is_register(&call_1.first, 1, 10));
    assert_eq!(store.counters.unimplemented.load(Ordering::SeqCst), 1, "probed once");
    transport.register(&tikv, region(1, 11)).await.unwrap();
    assert!(is_register(&call_1.next_request().await.unwrap(), 1, 11));
    transport.register(&tikv, region(2, 20)).await.unwrap();
    let mut call_2 = store.accept().await;
    assert!(is_register(&call_2.first, 2, 20));
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!(
        (stats.multiplexed_streams, stats.per_subscription_streams, stats.regions),
        (0, 2, 3)
    );

    // Batches carry request id 0 on EventFeed: the transport names the owner.
    call_2.send(resolved(0, vec![20], 77)).await;
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::Resolved { store_id: 1, request_id: 2, regions: vec![20], ts: 77 }
    );
    call_1.send(frame(vec![rows(0, 11, 1, 4)])).await;
    assert!(matches!(
        next_event(&mut events).await,
        StreamEvent::Region { request_id: 1, region_id: 11, event: RegionEvent::Rows(_), .. }
    ));

    // One region: forgotten locally, nothing on the wire (old TiKV reads Deregister as Register).
    transport.deregister(1, 1, Some(11)).await;
    transport.register(&tikv, region(1, 12)).await.unwrap();
    assert!(is_register(&call_1.next_request().await.unwrap(), 1, 12));
    // A whole subscription: its call closes, quietly.
    transport.deregister(1, 2, None).await;
    assert_eq!(call_2.next_request().await, None);
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!((stats.per_subscription_streams, stats.regions), (1, 2));
    let marker = StreamEvent::Deregistered { store_id: 1, request_id: 1, region_id: 11 };
    assert_eq!(events.try_recv(), Some(marker), "the single-region deregistration's marker");
    assert!(events.try_recv().is_none());
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
async fn reset_stream_reports_each_region_once_then_reconnects_and_reprobes() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    for (request_id, region_id) in [(1, 10), (1, 11), (2, 20)] {
        transport.register(&tikv, region(request_id, region_id)).await.unwrap();
    }
    let mut call = store.accept().await;
    call.next_request().await.unwrap();
    call.next_request().await.unwrap();
    call.send(frame(vec![rows(1, 10, 1, 4)])).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Region { region_id: 10, .. }));
    // TiKV dropped (1, 11) itself: it must not be reported again when the stream fails.
    call.send(frame(vec![region_not_found(1, 11)])).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Region { region_id: 11, .. }));
    call.send(Reply::Fail(tonic::Status::unavailable("reset mid-flight"))).await;
    let failed = failures(&mut events, 2).await;
    assert_eq!(
        failed.iter().map(|(request, region, _)| (*request, *region)).collect::<Vec<_>>(),
        vec![(1, 10), (2, 20)]
    );
    for (_, _, cause) in &failed {
        assert!(
            matches!(cause, StreamError::Status { code: tonic::Code::Unavailable, .. }),
            "{cause:?}"
        );
    }
    // Both directions are down: the server sees the request side end.
    assert_eq!(call.next_request().await, None);

    // The next registration reconnects (after the backoff) on a fresh, re-probed connection.
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    assert!(is_register(&call.first, 1, 10));
    assert_eq!(store.counters.probes.load(Ordering::SeqCst), 2);
    // The failed call's connection left the pool with its last call: the call's task drops its
    // lease in the same poll that ends the request side the server saw end above.
    assert_eq!(transport.store_stats(1).await.unwrap().connections, 1);

    // A clean end of stream is a failure too.
    transport.register(&tikv, region(2, 20)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 2, 20));
    drop(call);
    let failed = failures(&mut events, 2).await;
    assert!(failed.iter().all(|(_, _, cause)| *cause == StreamError::Eof));
    assert!(events.try_recv().is_none(), "every region was reported exactly once");
}

#[tokio::test]
async fn garbage_and_truncated_frames_fail_the_stream_with_a_decode_error() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    let whole = Bytes::from(prost::Message::encode_to_vec(&ChangeDataEvent {
        events: vec![rows(1, 10, 3, 32)],
        resolved_ts: None,
    }));
    for bad in [Bytes::from_static(&[0xFF; 64]), whole.slice(..whole.len() - 5)] {
        transport.register(&tikv, region(1, 10)).await.unwrap();
        transport.register(&tikv, region(2, 20)).await.unwrap();
        let mut call = store.accept().await;
        call.next_request().await.unwrap();
        call.send(Reply::Raw(bad)).await;
        let failed = failures(&mut events, 2).await;
        assert!(
            failed.iter().all(|(_, _, cause)| matches!(cause, StreamError::Decode(_))),
            "{failed:?}"
        );
        assert_eq!(call.next_request().await, None);
    }
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn a_40_mib_message_arrives_intact() {
    const SIZE: usize = 40 << 20;
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    let mut big = rows(1, 10, 1, 0);
    let value: Bytes = (0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    if let Some(cdcpb::event::Event::Entries(entries)) = &mut big.event {
        entries.entries[0].value = value.clone();
    }
    call.send(frame(vec![big])).await;
    call.send(resolved(1, vec![10], 9)).await;
    let StreamEvent::Region { event: RegionEvent::Rows(got), .. } = next_event(&mut events).await
    else {
        panic!("the big row first");
    };
    assert_eq!(got[0].value.len(), SIZE);
    assert!(got[0].value == value, "the value arrives intact");
    assert!(matches!(next_event(&mut events).await, StreamEvent::Resolved { ts: 9, .. }));
}

#[tokio::test]
async fn a_message_over_the_decode_limit_fails_the_stream() {
    let store = TestStore::start(true);
    let config = TransportConfig { max_decoding_message_size: 1 << 20, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    call.send(frame(vec![rows(1, 10, 1, 2 << 20)])).await;
    let failed = failures(&mut events, 1).await;
    assert!(
        matches!(failed[0].2, StreamError::Status { code: tonic::Code::OutOfRange, .. }),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_slow_consumer_holds_the_store_back_with_bounded_memory() {
    const FRAMES: usize = 400;
    const CAPACITY: usize = 4;
    let store = TestStore::start(true);
    let config = TransportConfig { event_channel_capacity: CAPACITY, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    let sent = std::sync::Arc::clone(&call.sent);
    // Each frame: 16 rows of 1 KiB, about 17 KiB on the wire.
    let producer = tokio::spawn(async move {
        for i in 0..FRAMES {
            let mut batch = rows(1, 10, 16, 1024);
            if let Some(cdcpb::event::Event::Entries(entries)) = &mut batch.event {
                entries.entries[0].start_ts = i as u64;
            }
            call.send(frame(vec![batch])).await;
        }
        call
    });
    // Wait until the channel is full and the stream is stalled behind it...
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while events.len() < CAPACITY {
        assert!(tokio::time::Instant::now() < deadline, "the channel never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and give an unbounded implementation every chance to read ahead. This sleep is not a
    // synchronisation: with bounded memory the count below holds however long we wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled_at = sent.load(Ordering::SeqCst);
    // Channel (4) + one frame in the receive task + the 64 KiB stream window (about 4 frames)
    // + the server's encode buffer; far below the 400 frames an unbounded reader would take.
    assert!(stalled_at <= 24, "the server got {stalled_at} frames out to a stalled consumer");
    // Draining lets everything through, in order.
    for i in 0..FRAMES {
        let StreamEvent::Region { event: RegionEvent::Rows(got), .. } =
            next_event(&mut events).await
        else {
            panic!("rows only");
        };
        assert_eq!(got[0].start_ts, i as u64);
    }
    let _call = producer.await.unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), FRAMES);
}

#[tokio::test]
async fn a_stream_without_regions_closes_after_the_idle_timeout() {
    let store = TestStore::start(true);
    // No keepalive: its timers would fire under paused time.
    let config = TransportConfig { keepalive: None, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let mut call = store.accept().await;
    transport.deregister(1, 1, None).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 0));
    // TiKV's answer to the deregistration (swallowed), then a resolved batch of the region
    // registered again meanwhile: it shows the stream is open and the answer consumed.
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    assert!(is_register(&call.next_request().await.unwrap(), 1, 10));
    call.send(frame(vec![region_not_found(1, 10)])).await;
    call.send(resolved(1, vec![10], 5)).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Resolved { ts: 5, .. }));
    transport.deregister(1, 1, Some(10)).await;
    assert!(is_deregister(&call.next_request().await.unwrap(), 1, 10));

    tokio::time::pause();
    let emptied = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(59)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(transport.store_stats(1).await.unwrap().multiplexed_streams, 1, "open at 59 s");
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(emptied.elapsed() >= Duration::from_secs(60));
    // The client ended its side; the server sees it over real I/O, so wait on the real clock.
    tokio::time::resume();
    assert_eq!(call.next_request().await, None);
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!(
        (stats.multiplexed_streams, stats.connections),
        (0, 0),
        "stream and connection closed"
    );
    while let Some(event) = events.try_recv() {
        assert!(matches!(event, StreamEvent::Deregistered { .. }), "an idle close fails nothing");
    }
}

#[tokio::test]
async fn a_killed_store_fails_its_regions_and_a_moved_store_is_followed() {
    // An EventFeed-only store, replaced by one serving EventFeedV2: the new connection is probed.
    let mut store = TestStore::start(false);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    transport.register(&target(1, &store), region(1, 11)).await.unwrap();
    // Keep the call: dropping it would end it cleanly before the kill.
    let call = store.accept().await;
    assert_eq!(call.method, Method::V1);
    store.kill();
    let failed = failures(&mut events, 2).await;
    assert!(
        failed.iter().all(|(_, _, cause)| matches!(cause, StreamError::Status { .. })),
        "{failed:?}"
    );

    drop(call);

    // Registering at the dead address fails with a typed error, and nothing is reported.
    let error = transport.register(&target(1, &store), region(1, 10)).await.unwrap_err();
    assert!(matches!(error, TransportError::Connect { store_id: 1, .. }), "{error}");

    // The store comes back elsewhere: the same id at a new address.
    let moved = TestStore::start(true);
    transport.register(&target(1, &moved), region(1, 10)).await.unwrap();
    let call = moved.accept().await;
    assert!(is_register(&call.first, 1, 10));
    assert_eq!(call.method, Method::V2);
    assert_eq!(transport.store_stats(1).await.unwrap().address, moved.address());

    // Another store id taking that address evicts store 1, failing its regions.
    let other = StoreTarget { store_id: 2, address: moved.address() };
    transport.register(&other, region(1, 20)).await.unwrap();
    let failed = failures(&mut events, 1).await;
    assert_eq!(failed, vec![(1, 10, StreamError::AddressChanged)]);
    assert_eq!(transport.stores(), vec![2]);

    // A removed store fails its regions too.
    moved.accept().await;
    transport.remove_store(2).await;
    assert_eq!(failures(&mut events, 1).await, vec![(1, 20, StreamError::StoreRemoved)]);
    assert!(transport.stores().is_empty());
    assert!(events.try_recv().is_none());
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
async fn mutual_tls_with_ca_cert_and_key_files() {
    let store = TestStore::start_tls(true);
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tls = kvfeed_transport::TlsConfig {
        ca_file: data.join("ca.pem"),
        client_identity: Some(kvfeed_transport::ClientIdentity {
            cert_file: data.join("server.pem"),
            key_file: data.join("server.key"),
        }),
        domain_name: Some("localhost".to_owned()),
    };
    let (transport, mut events) =
        Transport::new(TransportConfig { tls: Some(tls), ..config() }, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    assert_eq!(call.method, Method::V2);
    assert!(is_register(&call.first, 1, 10));
    call.send(resolved(1, vec![10], 3)).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Resolved { ts: 3, .. }));

    // A plain-text client cannot talk to it.
    let (plain, _events) = Transport::new(config(), CLUSTER_ID).unwrap();
    assert!(plain.register(&target(1, &store), region(1, 10)).await.is_err());
}

#[tokio::test]
async fn reconnects_back_off_exponentially() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = TransportConfig {
        keepalive: None,
        backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(8) },
        ..config()
    };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    let store = StoreTarget { store_id: 1, address: dead.to_string() };
    // Virtual time: only the transport's own sleeps (and connect timeouts) move it.
    tokio::time::pause();
    assert!(matches!(
        transport.register(&store, region(1, 10)).await,
        Err(TransportError::Connect { .. })
    ));
    for (failures, lower_bound) in [(1, Duration::from_millis(500)), (2, Duration::from_secs(1))] {
        let started = tokio::time::Instant::now();
        let error = transport.register(&store, region(1, 10)).await.unwrap_err();
        assert!(matches!(error, TransportError::Connect { .. }), "{error}");
        let waited = started.elapsed();
        assert!(waited >= lower_bound, "after {failures} failures waited only {waited:?}");
    }
    assert!(events.try_recv().is_none(), "nothing was registered, nothing is reported");
}

#[tokio::test]
async fn a_dial_in_progress_blocks_neither_stats_nor_deregistration_nor_removal() {
    // Accepts TCP connections and never speaks HTTP/2: a dial and probe hang until
    // `connect_timeout`, far beyond the patience of the calls below.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config =
        TransportConfig { keepalive: None, connect_timeout: Duration::from_secs(600), ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    let tikv = StoreTarget { store_id: 1, address: listener.local_addr().unwrap().to_string() };
    let dialling = tokio::spawn({
        let transport = transport.clone();
        let tikv = tikv.clone();
        async move { transport.register(&tikv, region(1, 10)).await }
    });
    // The dial is under way once the connection arrives.
    let (socket, _) = tokio::time::timeout(PATIENCE, listener.accept()).await.unwrap().unwrap();
    let stats = tokio::time::timeout(PATIENCE, transport.store_stats(1)).await.unwrap().unwrap();
    assert_eq!((stats.connections, stats.multiplexed_streams, stats.regions), (0, 0, 0));
    tokio::time::timeout(PATIENCE, transport.deregister(1, 2, None)).await.unwrap();
    tokio::time::timeout(PATIENCE, transport.remove_store(1)).await.unwrap();
    assert!(transport.stores().is_empty());
    // The store goes away: the dial fails, nothing was registered, nothing is reported.
    drop(listener);
    drop(socket);
    let result = tokio::time::timeout(PATIENCE, dialling).await.unwrap().unwrap();
    assert!(result.is_err(), "{result:?}");
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn concurrent_registrations_share_one_dial_and_one_stream() {
    let store = TestStore::start(true);
    let (transport, _events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    // The first dials (without the slot's lock); the second waits for its session.
    let (first, second) = tokio::join!(
        transport.register(&tikv, region(1, 10)),
        transport.register(&tikv, region(1, 11))
    );
    first.unwrap();
    second.unwrap();
    let mut call = store.accept().await;
    assert!(is_register(&call.first, 1, 10));
    assert!(is_register(&call.next_request().await.unwrap(), 1, 11));
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!((stats.connections, stats.multiplexed_streams, stats.regions), (1, 1, 2));
    assert_eq!(store.counters.probes.load(Ordering::SeqCst), 1);
    assert!(store.try_accept().await.is_none(), "one call");
}

#[tokio::test]
async fn a_store_removed_while_dialling_reports_the_region_failed() {
    let store = TestStore::start(true);
    let (transport, mut events) = Transport::new(config(), CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    // The registration is polled first: it marks its slot connecting and waits for the dial; the
    // removal then runs to completion during that dial.
    let (registered, ()) =
        tokio::join!(transport.register(&tikv, region(1, 10)), transport.remove_store(1));
    registered.unwrap();
    assert_eq!(failures(&mut events, 1).await, vec![(1, 10, StreamError::StoreRemoved)]);
    assert!(transport.stores().is_empty());
    assert!(events.try_recv().is_none());
}
