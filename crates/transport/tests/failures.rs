//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! Stream failures: a reset stream or a killed store reports each of its regions failed exactly
//! once, then the transport reconnects (with exponential backoff) and follows a store that moved.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{CLUSTER_ID, config, failures, is_register, next_event, region, target};
use kvfeed_testkit::store::{Method, Reply, TestStore, frame, region_not_found, rows};
use kvfeed_transport::{
    Backoff, StoreTarget, StreamError, StreamEvent, Transport, TransportConfig, TransportError,
};

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
