//! Fuzz entry points (compiled under `cfg(fuzzing)`, which cargo-fuzz sets, and under `cfg(test)`,
//! where proptest drives the same checks). Not part of the crate's API.
//!
//! - [`transport_decode`]: arbitrary bytes as a `ChangeDataEvent` frame through
//!   [`decode_frame`](crate::demux::decode_frame) and demultiplexing, on a multiplexed and on a
//!   per-subscription stream, checked against a plain prost decode of the same bytes.
//! - [`transport_read`]: arbitrary bytes as a `KvScan` or `KvBatchGet` answer through the
//!   conversion of its pairs, checked pair by pair against the prost decode.

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, ChangeDataEvent};
use prost::Message as _;

use crate::demux::{Route, decode_frame};
use crate::event::{RegionEvent, StreamEvent};

/// Converts `data`, decoded as a `ScanResponse` (and as a `BatchGetResponse`), as a snapshot
/// read does; panics on any divergence from the decoded pairs (never otherwise).
pub fn transport_read(data: &[u8]) {
    use kvfeed_proto::kvrpcpb;

    use crate::kv::KvError;
    use crate::read::{Read, reads_of};

    let scan = kvrpcpb::ScanResponse::decode(data).map(|resp| resp.pairs);
    let batch = kvrpcpb::BatchGetResponse::decode(data).map(|resp| resp.pairs);
    for pairs in [scan, batch].into_iter().flatten() {
        let fatal = pairs
            .iter()
            .position(|pair| pair.error.as_ref().is_some_and(|error| error.locked.is_none()));
        match (reads_of(1, "fuzz", pairs.clone()), fatal) {
            (Ok(reads), None) => {
                assert_eq!(reads.len(), pairs.len());
                for (read, pair) in reads.iter().zip(&pairs) {
                    match read {
                        Read::Value { key, value } => {
                            assert!(pair.error.is_none());
                            assert_eq!((key, value), (&pair.key, &pair.value));
                        }
                        Read::Locked(lock) => {
                            let wire = pair.error.as_ref().and_then(|e| e.locked.as_ref());
                            let wire = wire.expect("a Locked read comes from a lock");
                            assert_eq!((&lock.key, lock.start_ts), (&wire.key, wire.lock_version));
                        }
                    }
                }
            }
            (Err(KvError::Key { store_id: 1, .. }), Some(_)) => {}
            (result, fatal) => panic!("{result:?} for pairs with a fatal error at {fatal:?}"),
        }
    }
}

/// Decodes and demultiplexes `data` as a frame; panics on any divergence from prost's own decode
/// (it must never panic otherwise).
pub fn transport_decode(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let oracle = ChangeDataEvent::decode(data);
    let owner = data.first().map(|&byte| u64::from(byte));
    for route in [Route { store_id: 1, owner: None }, Route { store_id: 2, owner }] {
        let demux = decode_frame(frame.clone(), route);
        let (demux, oracle) = match (demux, &oracle) {
            (Ok(demux), Ok(oracle)) => (demux, oracle),
            (Err(_), Err(_)) => continue,
            (demux, oracle) => panic!("decode disagrees with prost: {demux:?} vs {oracle:?}"),
        };
        let mut rows = 0;
        let mut region_events = 0;
        let mut batches = 0;
        for event in demux {
            match event {
                StreamEvent::Region { store_id, request_id, event, .. } => {
                    assert_eq!(store_id, route.store_id);
                    if let Some(owner) = route.owner {
                        assert_eq!(request_id, owner, "V1 events belong to the stream's owner");
                    }
                    region_events += 1;
                    if let RegionEvent::Rows(batch) = event {
                        assert!(!batch.is_empty());
                        rows += batch.len();
                    }
                }
                StreamEvent::Resolved { request_id, regions, .. } => {
                    assert!(!regions.is_empty());
                    if let Some(owner) = route.owner {
                        assert_eq!(request_id, owner);
                    }
                    batches += 1;
                }
                StreamEvent::RegionFailed { .. } => panic!("decoding never fails a region"),
                StreamEvent::Deregistered { .. } => panic!("decoding never deregisters"),
            }
        }
        let expected_rows: usize = oracle
            .events
            .iter()
            .filter_map(|event| match &event.event {
                Some(cdcpb::event::Event::Entries(entries)) => Some(entries.entries.len()),
                _ => None,
            })
            .sum();
        let expected_events = oracle
            .events
            .iter()
            .filter(|event| match &event.event {
                Some(cdcpb::event::Event::Entries(entries)) => !entries.entries.is_empty(),
                Some(cdcpb::event::Event::Error(_) | cdcpb::event::Event::ResolvedTs(_)) => true,
                _ => false,
            })
            .count();
        let expected_batches = usize::from(
            oracle.resolved_ts.as_ref().is_some_and(|resolved| !resolved.regions.is_empty()),
        );
        assert_eq!(rows, expected_rows);
        assert_eq!(region_events, expected_events);
        assert_eq!(batches, expected_batches);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fuzzing::transport_decode;

    fn sample() -> Vec<u8> {
        let row = cdcpb::event::Row {
            start_ts: 1,
            commit_ts: 2,
            r#type: 9,
            op_type: 1,
            key: Bytes::from_static(b"key"),
            value: Bytes::from_static(b"value"),
            ..cdcpb::event::Row::default()
        };
        ChangeDataEvent {
            events: vec![cdcpb::Event {
                region_id: 3,
                request_id: 4,
                index: 5,
                event: Some(cdcpb::event::Event::Entries(cdcpb::event::Entries {
                    entries: vec![row],
                })),
            }],
            resolved_ts: Some(cdcpb::ResolvedTs { regions: vec![3], ts: 9, request_id: 4 }),
        }
        .encode_to_vec()
    }

    fn scan_sample() -> Vec<u8> {
        use kvfeed_proto::kvrpcpb;
        let locked = kvrpcpb::KeyError {
            locked: Some(kvrpcpb::LockInfo {
                key: Bytes::from_static(b"b"),
                lock_version: 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        let pair = |key: &'static [u8], error| kvrpcpb::KvPair {
            key: Bytes::from_static(key),
            value: Bytes::from_static(b"value"),
            error,
            ..Default::default()
        };
        kvrpcpb::ScanResponse {
            pairs: vec![pair(b"a", None), pair(b"b", Some(locked)), pair(b"c", None)],
            ..Default::default()
        }
        .encode_to_vec()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            transport_decode(&data);
            crate::fuzzing::transport_read(&data);
        }

        #[test]
        fn mutated_read_answers_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), cut in any::<prop::sample::Index>()) {
            let mut data = scan_sample();
            for (at, byte) in flips {
                let at = at.index(data.len());
                data[at] = byte;
            }
            let len = cut.index(data.len() + 1);
            crate::fuzzing::transport_read(&data[..len]);
        }

        #[test]
        fn mutated_frames_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), cut in any::<prop::sample::Index>()) {
            let mut data = sample();
            for (at, byte) in flips {
                let at = at.index(data.len());
                data[at] = byte;
            }
            let len = cut.index(data.len() + 1);
            transport_decode(&data[..len]);
        }
    }
}
