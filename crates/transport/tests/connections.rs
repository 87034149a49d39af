//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! Connections and their lifecycle: one dial shared by concurrent registrations, a dial in progress
//! blocking nothing else, a store removed while dialling, and streams closed once idle.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    CLUSTER_ID, config, failures, is_deregister, is_register, next_event, region, target,
};
use kvfeed_testkit::store::{PATIENCE, TestStore, frame, region_not_found, resolved};
use kvfeed_transport::{StoreTarget, StreamError, StreamEvent, Transport, TransportConfig};

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
