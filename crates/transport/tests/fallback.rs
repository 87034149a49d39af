//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! The `EventFeed` fallback: a store that answers `EventFeedV2` with `UNIMPLEMENTED` gets one
//! `EventFeed` call per subscription, and a region deregistered there and registered again replaces
//! its call.

mod common;

use std::sync::atomic::Ordering;

use common::{CLUSTER_ID, config, failures, is_register, next_event, region, target};
use kvfeed_testkit::store::{Method, TestStore, frame, region_not_found, resolved, rows};
use kvfeed_transport::{RegionEvent, StreamError, StreamEvent, Transport, TransportConfig};

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

/// Issue 18 item 7: with several streams per store, a V1 region registered again while its old
/// registration still streams on one call goes to another slot's call: the first call, and its
/// other regions, are left alone.
#[tokio::test]
async fn v1_region_registered_again_uses_another_slot_before_replacing_a_call() {
    let store = TestStore::start(false);
    let config = TransportConfig { streams_per_store: 2, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    let tikv = target(1, &store);
    // Round robin over the two slots: 10 and 12 on the first call, 11 and 13 on the second.
    transport.register(&tikv, region(1, 10)).await.unwrap();
    let mut call_1 = store.accept().await;
    transport.register(&tikv, region(1, 11)).await.unwrap();
    let mut call_2 = store.accept().await;
    assert!(is_register(&call_2.first, 1, 11));
    transport.register(&tikv, region(1, 12)).await.unwrap();
    assert!(is_register(&call_1.next_request().await.unwrap(), 1, 12));
    transport.register(&tikv, region(1, 13)).await.unwrap();
    assert!(is_register(&call_2.next_request().await.unwrap(), 1, 13));

    // Region 10 is forgotten locally (TiKV keeps streaming it on the first call) and registered
    // again: its turn is the first call's slot, which streams the zombie, so the second call
    // takes it.
    transport.deregister(1, 1, Some(10)).await;
    transport.register(&tikv, region(1, 10)).await.unwrap();
    assert!(is_register(&call_2.next_request().await.unwrap(), 1, 10));
    // The first call goes on: its zombie's events are dropped, region 12's delivered.
    call_1.send(frame(vec![rows(0, 10, 1, 4), rows(0, 12, 2, 4)])).await;
    let StreamEvent::Region { request_id: 1, region_id: 12, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("region 12's rows on the first call");
    };
    assert_eq!(got.len(), 2);
    call_2.send(frame(vec![rows(0, 10, 3, 4)])).await;
    let StreamEvent::Region { request_id: 1, region_id: 10, event: RegionEvent::Rows(got), .. } =
        next_event(&mut events).await
    else {
        panic!("the new registration's rows on the second call");
    };
    assert_eq!(got.len(), 3);
    assert!(events.try_recv().is_none(), "no region failed");
    let stats = transport.store_stats(1).await.unwrap();
    assert_eq!((stats.per_subscription_streams, stats.regions), (2, 4));
}
