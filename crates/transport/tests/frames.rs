//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! Frames on the wire: garbage and truncated frames, messages at and over the decode limit, and a
//! slow consumer holding the store back through HTTP/2 flow control with bounded memory.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{CLUSTER_ID, config, failures, next_event, region, target};
use kvfeed_proto::cdcpb::{self, ChangeDataEvent};
use kvfeed_testkit::store::{PATIENCE, Reply, ServerCall, TestStore, frame, resolved, rows};
use kvfeed_transport::{RegionEvent, StreamError, StreamEvent, Transport, TransportConfig};

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

/// Sends `frames` frames of 16 rows of 1 KiB (about 17 KiB on the wire each), frame `i`'s first
/// row with start ts `i`; hands the call back.
async fn send_numbered_frames(call: ServerCall, frames: usize) -> ServerCall {
    for i in 0..frames {
        let mut batch = rows(1, 10, 16, 1024);
        if let Some(cdcpb::event::Event::Entries(entries)) = &mut batch.event {
            entries.entries[0].start_ts = i as u64;
        }
        call.send(frame(vec![batch])).await;
    }
    call
}

/// The channel is bounded in bytes too: with room for 1024 events but 64 KiB, a stalled
/// consumer holds four 16 KiB frames' events at most, and nothing is lost.
#[tokio::test]
async fn the_event_channel_is_bounded_in_bytes() {
    const FRAMES: usize = 200;
    const BYTES: usize = 64 << 10;
    let store = TestStore::start(true);
    let config = TransportConfig { event_channel_bytes: BYTES, ..config() };
    let (transport, mut events) = Transport::new(config, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    let sent = std::sync::Arc::clone(&call.sent);
    let producer = tokio::spawn(send_numbered_frames(call, FRAMES));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while transport.queued_bytes() + 17 * 1024 <= BYTES {
        assert!(tokio::time::Instant::now() < deadline, "the budget never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not a synchronisation: with a byte bound the figures below hold however long we wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(transport.queued_bytes() <= BYTES, "{} bytes queued", transport.queued_bytes());
    assert!(
        events.len() <= 4,
        "{} events queued: the count bound (1024) would allow all",
        events.len()
    );
    assert!(sent.load(Ordering::SeqCst) <= 24, "the store was held back");
    // An event taken with its charge keeps its bytes in the budget until the charge is dropped.
    let (first, charge) = events.recv_charged().await.expect("an event");
    assert!(matches!(first, StreamEvent::Region { .. }));
    assert!(charge.bytes() > 16 * 1024 && transport.queued_bytes() >= charge.bytes());
    drop(charge);
    for i in 1..FRAMES {
        let StreamEvent::Region { event: RegionEvent::Rows(got), .. } =
            next_event(&mut events).await
        else {
            panic!("rows only");
        };
        assert_eq!(got[0].start_ts, i as u64);
        assert!(transport.queued_bytes() <= BYTES);
    }
    let _call = producer.await.unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), FRAMES);
    assert_eq!(transport.queued_bytes(), 0, "every charge given back");
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
    let producer = tokio::spawn(send_numbered_frames(call, FRAMES));
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
