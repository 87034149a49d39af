//! Decoding and demultiplexing of one `ChangeDataEvent` frame: the pure function at the heart of
//! the receive path, called by the stream task, the fuzz target and the benchmark alike.
//!
//! A frame may mix events of many regions and subscriptions; [`decode_frame`] decodes it once and
//! [`Demux`] yields one [`StreamEvent`] per region event, then the resolved-ts batch if any, in
//! frame order, moving every row out of the decoded message. Events that carry nothing for the
//! feed (`Admin`, `LongTxn`, an unset event, empty row batches and empty resolved batches) are
//! skipped. On an `EventFeed` (V1) stream, which belongs to one subscription, every event and
//! batch is attributed to that subscription (TiKV sends request id 0 in its batches).

use alloc::vec;

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, ChangeDataEvent, event};
use prost::Message as _;

use crate::error::FrameError;
use crate::event::{RegionError, RegionEvent, Row, StreamEvent};

/// Where the frames of one stream come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The store the stream goes to.
    pub store_id: u64,
    /// `Some(subscription)` on an `EventFeed` stream (one per subscription); `None` on a
    /// multiplexed `EventFeedV2` stream, where events carry their own request ids.
    pub owner: Option<u64>,
}

/// The events of one decoded frame, yielded in frame order.
#[derive(Debug)]
pub struct Demux {
    route: Route,
    events: vec::IntoIter<cdcpb::Event>,
    resolved: Option<cdcpb::ResolvedTs>,
}

/// Decodes one frame. Malformed bytes give a [`FrameError`], never a panic.
pub fn decode_frame(frame: Bytes, route: Route) -> Result<Demux, FrameError> {
    let decoded = ChangeDataEvent::decode(frame).map_err(FrameError::new)?;
    Ok(Demux { route, events: decoded.events.into_iter(), resolved: decoded.resolved_ts })
}

impl Iterator for Demux {
    type Item = StreamEvent;

    fn next(&mut self) -> Option<StreamEvent> {
        for wire in self.events.by_ref() {
            let event = match wire.event {
                Some(event::Event::Entries(entries)) if !entries.entries.is_empty() => {
                    // In place: same size and alignment (see `event::Row`).
                    RegionEvent::Rows(entries.entries.into_iter().map(Row::from_wire).collect())
                }
                Some(event::Event::Error(error)) => {
                    RegionEvent::Error(RegionError::from_wire(error))
                }
                Some(event::Event::ResolvedTs(ts)) => RegionEvent::ResolvedTs(ts),
                Some(
                    event::Event::Entries(_) | event::Event::Admin(_) | event::Event::LongTxn(_),
                )
                | None => continue,
            };
            return Some(StreamEvent::Region {
                store_id: self.route.store_id,
                request_id: self.route.owner.unwrap_or(wire.request_id),
                region_id: wire.region_id,
                event,
            });
        }
        let resolved = self.resolved.take().filter(|resolved| !resolved.regions.is_empty())?;
        Some(StreamEvent::Resolved {
            store_id: self.route.store_id,
            request_id: self.route.owner.unwrap_or(resolved.request_id),
            regions: resolved.regions,
            ts: resolved.ts,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.events.len() + usize::from(self.resolved.is_some())))
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use kvfeed_proto::{cdcpb, errorpb};

    use super::*;
    use crate::event::{RowKind, RowOp};

    const V2: Route = Route { store_id: 1, owner: None };

    fn row(key: &'static [u8], kind: event::LogType) -> event::Row {
        event::Row {
            start_ts: 10,
            commit_ts: 20,
            r#type: kind as i32,
            op_type: event::row::OpType::Put as i32,
            key: Bytes::from_static(key),
            value: Bytes::from_static(b"value"),
            old_value: Bytes::from_static(b"old"),
            ..event::Row::default()
        }
    }

    fn entries(request_id: u64, region_id: u64, rows: Vec<event::Row>) -> cdcpb::Event {
        cdcpb::Event {
            region_id,
            request_id,
            index: 0,
            event: Some(event::Event::Entries(event::Entries { entries: rows })),
        }
    }

    fn frame(message: &ChangeDataEvent) -> Bytes {
        Bytes::from(message.encode_to_vec())
    }

    #[test]
    fn mixed_frame_is_split_per_region_and_request() {
        let message = ChangeDataEvent {
            events: vec![
                entries(1, 100, vec![row(b"k1", event::LogType::Prewrite)]),
                entries(
                    2,
                    100,
                    vec![
                        row(b"k2", event::LogType::Commit),
                        row(b"k3", event::LogType::Initialized),
                    ],
                ),
                cdcpb::Event {
                    region_id: 200,
                    request_id: 1,
                    index: 0,
                    event: Some(event::Event::Error(cdcpb::Error {
                        region_not_found: Some(errorpb::RegionNotFound { region_id: 200 }),
                        ..cdcpb::Error::default()
                    })),
                },
                cdcpb::Event {
                    region_id: 300,
                    request_id: 1,
                    index: 0,
                    event: Some(event::Event::ResolvedTs(55)),
                },
                // Skipped: nothing for the feed.
                cdcpb::Event { region_id: 400, request_id: 1, index: 0, event: None },
                cdcpb::Event {
                    region_id: 400,
                    request_id: 1,
                    index: 0,
                    event: Some(event::Event::Admin(event::Admin::default())),
                },
                entries(1, 500, Vec::new()),
            ],
            resolved_ts: Some(cdcpb::ResolvedTs { regions: vec![100, 300], ts: 99, request_id: 2 }),
        };
        let bytes = frame(&message);
        let out: Vec<_> = decode_frame(bytes.clone(), V2).unwrap().collect();
        assert_eq!(out.len(), 5);
        let StreamEvent::Region {
            request_id: 1,
            region_id: 100,
            event: RegionEvent::Rows(rows),
            ..
        } = &out[0]
        else {
            panic!("{:?}", out[0]);
        };
        assert_eq!(rows[0].kind, RowKind::Prewrite);
        assert_eq!(rows[0].op, RowOp::Put);
        assert_eq!(&rows[0].key[..], b"k1");
        // The key is a slice of the frame, not a copy.
        let frame_range = bytes.as_ptr_range();
        assert!(frame_range.contains(&rows[0].key.as_ptr()));
        let StreamEvent::Region { request_id: 2, event: RegionEvent::Rows(rows), .. } = &out[1]
        else {
            panic!("{:?}", out[1]);
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].kind, RowKind::Initialized);
        assert!(matches!(
            &out[2],
            StreamEvent::Region {
                region_id: 200,
                event: RegionEvent::Error(RegionError::RegionNotFound),
                ..
            }
        ));
        assert!(matches!(
            &out[3],
            StreamEvent::Region { region_id: 300, event: RegionEvent::ResolvedTs(55), .. }
        ));
        assert_eq!(
            out[4],
            StreamEvent::Resolved { store_id: 1, request_id: 2, regions: vec![100, 300], ts: 99 }
        );
    }

    #[test]
    fn v1_streams_attribute_everything_to_their_owner() {
        let message = ChangeDataEvent {
            events: Vec::new(),
            resolved_ts: Some(cdcpb::ResolvedTs { regions: vec![7, 8], ts: 5, request_id: 0 }),
        };
        let route = Route { store_id: 4, owner: Some(77) };
        let out: Vec<_> = decode_frame(frame(&message), route).unwrap().collect();
        assert_eq!(
            out,
            vec![StreamEvent::Resolved { store_id: 4, request_id: 77, regions: vec![7, 8], ts: 5 }]
        );
        let message = ChangeDataEvent {
            events: vec![entries(0, 7, vec![row(b"k", event::LogType::Committed)])],
            resolved_ts: None,
        };
        let out: Vec<_> = decode_frame(frame(&message), route).unwrap().collect();
        assert!(matches!(out[..], [StreamEvent::Region { request_id: 77, region_id: 7, .. }]));
    }

    #[test]
    fn empty_resolved_batches_are_skipped() {
        let message = ChangeDataEvent {
            events: Vec::new(),
            resolved_ts: Some(cdcpb::ResolvedTs { regions: Vec::new(), ts: 5, request_id: 1 }),
        };
        assert_eq!(decode_frame(frame(&message), V2).unwrap().count(), 0);
        assert_eq!(decode_frame(Bytes::new(), V2).unwrap().count(), 0);
    }

    #[test]
    fn garbage_and_truncated_frames_are_errors() {
        assert!(decode_frame(Bytes::from_static(&[0xFF; 16]), V2).is_err());
        let message = ChangeDataEvent {
            events: vec![entries(1, 100, vec![row(b"key", event::LogType::Prewrite)])],
            resolved_ts: None,
        };
        let whole = frame(&message);
        for cut in 1..whole.len() {
            // Some prefixes are valid messages (a cut between fields); none may panic.
            let _ = decode_frame(whole.slice(..cut), V2).map(Iterator::count);
        }
        assert!(decode_frame(whole.slice(..whole.len() - 1), V2).is_err());
    }
}
