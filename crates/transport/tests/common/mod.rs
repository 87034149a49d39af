//! Helpers shared by the transport's integration tests: the transport's configuration and
//! registrations as the tests use them, request matchers, and waiting for events.

#![allow(dead_code)]

use std::time::Duration;

use kvfeed_proto::cdcpb::{self, change_data_request};
use kvfeed_span::{EncodedKey, Span};
use kvfeed_testkit::store::{PATIENCE, TestStore};
use kvfeed_transport::{
    Backoff, Events, RegionEpoch, RegisterRequest, StoreTarget, StreamError, StreamEvent,
    TransportConfig,
};

/// The cluster id of every test transport.
pub const CLUSTER_ID: u64 = 6_800_000_000_001;

/// One stream per store and a backoff of a few ms, so failures are retried at once.
pub fn config() -> TransportConfig {
    TransportConfig {
        streams_per_store: 1,
        backoff: Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(4) },
        ..TransportConfig::default()
    }
}

/// The transport's target for `store` under id `store_id`.
pub fn target(store_id: u64, store: &TestStore) -> StoreTarget {
    StoreTarget { store_id, address: store.address() }
}

/// The registration of `region_id` (span `[a, z)`, epoch 1/3, checkpoint 400) for a request.
pub fn region(request_id: u64, region_id: u64) -> RegisterRequest {
    RegisterRequest {
        request_id,
        region_id,
        epoch: RegionEpoch { conf_ver: 1, version: 3 },
        span: Span::new(EncodedKey::encode(b"a"), EncodedKey::encode(b"z")).unwrap(),
        checkpoint_ts: 400,
    }
}

/// Whether `request` registers that pair, with the full header.
pub fn is_register(request: &cdcpb::ChangeDataRequest, request_id: u64, region_id: u64) -> bool {
    request.request_id == request_id
        && request.region_id == region_id
        && matches!(request.request, Some(change_data_request::Request::Register(_)))
        && request
            .header
            .as_ref()
            .is_some_and(|h| h.cluster_id == CLUSTER_ID && h.ticdc_version == "8.1.0")
}

/// Whether `request` deregisters that pair, with the header.
pub fn is_deregister(request: &cdcpb::ChangeDataRequest, request_id: u64, region_id: u64) -> bool {
    request.request_id == request_id
        && request.region_id == region_id
        && matches!(request.request, Some(change_data_request::Request::Deregister(_)))
        && request.header.as_ref().is_some_and(|h| h.cluster_id == CLUSTER_ID)
}

/// Collects `n` `RegionFailed` events, checking nothing else arrives in between.
pub async fn failures(events: &mut Events, n: usize) -> Vec<(u64, u64, StreamError)> {
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

/// The next event, skipping the `Deregistered` markers of single-region deregistrations (the
/// tests that check them use [`next_event_or_marker`]); fails the test if none comes in time.
pub async fn next_event(events: &mut Events) -> StreamEvent {
    loop {
        let event = next_event_or_marker(events).await;
        if !matches!(event, StreamEvent::Deregistered { .. }) {
            return event;
        }
    }
}

/// The next event, markers included; fails the test if none comes in time.
pub async fn next_event_or_marker(events: &mut Events) -> StreamEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("no event in time")
        .expect("event channel closed")
}
