//! Wire tests: the generated types encode and decode exactly the bytes TiKV and PD exchange.
//!
//! Every expected frame is written out by hand from the field numbers and wire types of
//! `reference/kvproto-wire.md`, not produced by prost, so a wrong field number or type in
//! `proto/` fails here. A tag byte is `(field << 3) | wire_type`, with wire type 0 = varint,
//! 1 = fixed64, 2 = length-delimited, 3/4 = group start/end, 5 = fixed32.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kvfeed_proto::cdcpb::{
    self, ChangeDataEvent, ChangeDataRequest, Header, ResolvedTs, ScanPriority,
    change_data_request, event,
};
use kvfeed_proto::{errorpb, kvrpcpb, metapb, pdpb, tikvpb};
use prost::Message;

const TS: u64 = (1 << 50) | 1;

fn header() -> Header {
    Header { cluster_id: 1234, ticdc_version: "8.1.0".to_owned() }
}

/// A ChangeDataRequest with every field set (Register as the oneof member).
fn full_register() -> ChangeDataRequest {
    ChangeDataRequest {
        header: Some(header()),
        region_id: 42,
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 5, version: 300 }),
        checkpoint_ts: TS,
        start_key: Bytes::from_static(&[0x74, 0x80]),
        end_key: Bytes::from_static(&[0x74, 0x81]),
        request_id: 7,
        extra_op: kvrpcpb::ExtraOp::ReadOldValue.into(),
        kv_api: change_data_request::KvApi::TxnKv.into(),
        filter_loop: true,
        scan_priority: ScanPriority::High.into(),
        request: Some(change_data_request::Request::Register(change_data_request::Register {})),
    }
}

#[rustfmt::skip]
const FULL_REGISTER: &[u8] = &[
    0x0a, 0x0a,             // 1 header, length-delimited (1<<3|2), 10 bytes
      0x08, 0xd2, 0x09,     //   1 cluster_id, varint 1234
      0x12, 0x05,           //   2 ticdc_version, 5 bytes
        b'8', b'.', b'1', b'.', b'0',
    0x10, 0x2a,             // 2 region_id (2<<3|0) = 42
    0x1a, 0x05,             // 3 region_epoch (3<<3|2), 5 bytes
      0x08, 0x05,           //   1 conf_ver = 5
      0x10, 0xac, 0x02,     //   2 version = 300
    0x20,                   // 4 checkpoint_ts (4<<3|0) = 2^50 + 1
      0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
    0x2a, 0x02, 0x74, 0x80, // 5 start_key (5<<3|2)
    0x32, 0x02, 0x74, 0x81, // 6 end_key (6<<3|2)
    0x38, 0x07,             // 7 request_id (7<<3|0) = 7
    0x40, 0x01,             // 8 extra_op (8<<3|0) = ReadOldValue
    0x4a, 0x00,             // 9 register (9<<3|2), empty message
    0x58, 0x02,             // 11 kv_api (11<<3|0) = TxnKV
    0x60, 0x01,             // 12 filter_loop (12<<3|0) = true
    0x70, 0x02,             // 14 scan_priority (14<<3|0) = SCAN_PRIORITY_HIGH
];

/// The lengths at which FULL_REGISTER can be cut between two top-level fields.
const FULL_REGISTER_FIELD_ENDS: &[usize] = &[0, 12, 14, 21, 30, 34, 38, 40, 42, 44, 46, 48, 50];

#[test]
fn change_data_request_with_every_field_encodes_to_the_hand_computed_bytes() {
    let request = full_register();
    assert_eq!(request.encode_to_vec(), FULL_REGISTER);
    assert_eq!(request.encoded_len(), FULL_REGISTER.len());
    assert_eq!(ChangeDataRequest::decode(FULL_REGISTER).unwrap(), request);
}

#[test]
fn deregister_is_a_real_deregister_on_the_wire() {
    let request = ChangeDataRequest {
        header: Some(header()),
        region_id: 42,
        request_id: 7,
        request: Some(change_data_request::Request::Deregister(change_data_request::Deregister {})),
        ..ChangeDataRequest::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 0x0a, 0x08, 0xd2, 0x09, 0x12, 0x05, b'8', b'.', b'1', b'.', b'0', // 1 header
        0x10, 0x2a, // 2 region_id = 42
        0x38, 0x07, // 7 request_id = 7
        0x6a, 0x00, // 13 deregister (13<<3|2), empty message
    ];
    assert_eq!(request.encode_to_vec(), expected);
    let decoded = ChangeDataRequest::decode(expected).unwrap();
    assert!(matches!(decoded.request, Some(change_data_request::Request::Deregister(_))));

    // An unset oneof puts nothing on the wire (TiKV reads that as Register, so never rely on it
    // for a deregistration).
    let unset = ChangeDataRequest { region_id: 42, ..ChangeDataRequest::default() };
    assert_eq!(unset.encode_to_vec(), [0x10, 0x2a]);
}

#[rustfmt::skip]
const ENTRIES_EVENT: &[u8] = &[
    0x0a, 0x1d,                 // ChangeDataEvent 1 events[0], 29 bytes
      0x08, 0x03,               //   Event 1 region_id = 3
      0x1a, 0x17,               //   Event 3 entries (oneof event), 23 bytes
        0x0a, 0x11,             //     Entries 1 entries[0], 17 bytes
          0x08, 0x64,           //       Row 1 start_ts = 100
          0x10, 0x65,           //       Row 2 commit_ts = 101
          0x18, 0x04,           //       Row 3 type = COMMITTED
          0x20, 0x01,           //       Row 4 op_type = PUT
          0x2a, 0x01, b'k',     //       Row 5 key
          0x32, 0x01, b'v',     //       Row 6 value
          0x3a, 0x01, b'o',     //       Row 7 old_value
        0x0a, 0x02,             //     Entries 1 entries[1], 2 bytes
          0x18, 0x05,           //       Row 3 type = INITIALIZED
      0x38, 0x07,               //   Event 7 request_id = 7
];

fn entries_event() -> ChangeDataEvent {
    let put = event::Row {
        start_ts: 100,
        commit_ts: 101,
        r#type: event::LogType::Committed.into(),
        op_type: event::row::OpType::Put.into(),
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        old_value: Bytes::from_static(b"o"),
        ..event::Row::default()
    };
    let initialized =
        event::Row { r#type: event::LogType::Initialized.into(), ..event::Row::default() };
    ChangeDataEvent {
        events: vec![cdcpb::Event {
            region_id: 3,
            index: 0,
            request_id: 7,
            event: Some(event::Event::Entries(event::Entries { entries: vec![put, initialized] })),
        }],
        resolved_ts: None,
    }
}

#[rustfmt::skip]
const RESOLVED_TS_PACKED: &[u8] = &[
    0x12, 0x11,                 // ChangeDataEvent 2 resolved_ts, 17 bytes
      0x0a, 0x04,               //   ResolvedTs 1 regions, packed, 4 bytes
        0x03, 0xac, 0x02, 0x05, //     3, 300, 5
      0x10,                     //   ResolvedTs 2 ts = 2^50 + 1
        0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
      0x18, 0x07,               //   ResolvedTs 3 request_id = 7
];

#[rustfmt::skip]
const RESOLVED_TS_UNPACKED: &[u8] = &[
    0x12, 0x12,                 // ChangeDataEvent 2 resolved_ts, 18 bytes
      0x08, 0x03,               //   ResolvedTs 1 regions (varint, unpacked) = 3
      0x08, 0xac, 0x02,         //   ResolvedTs 1 regions = 300
      0x08, 0x05,               //   ResolvedTs 1 regions = 5
      0x10,                     //   ResolvedTs 2 ts = 2^50 + 1
        0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
      0x18, 0x07,               //   ResolvedTs 3 request_id = 7
];

fn resolved_ts_event() -> ChangeDataEvent {
    ChangeDataEvent {
        events: Vec::new(),
        resolved_ts: Some(ResolvedTs { regions: vec![3, 300, 5], ts: TS, request_id: 7 }),
    }
}

#[test]
fn change_data_event_with_rows_decodes_from_hand_built_bytes() {
    let decoded = ChangeDataEvent::decode(ENTRIES_EVENT).unwrap();
    assert_eq!(decoded, entries_event());
    let Some(event::Event::Entries(entries)) = &decoded.events[0].event else {
        panic!("expected entries, got {:?}", decoded.events[0].event);
    };
    assert_eq!(entries.entries[0].r#type(), event::LogType::Committed);
    assert_eq!(entries.entries[0].op_type(), event::row::OpType::Put);
    assert_eq!(entries.entries[1].r#type(), event::LogType::Initialized);
    assert_eq!(entries.entries[1].op_type(), event::row::OpType::Unknown);
    // prost writes the oneof (tag 3) before request_id (tag 7), as the literal does.
    assert_eq!(entries_event().encode_to_vec(), ENTRIES_EVENT);
}

#[test]
fn batched_resolved_ts_decodes_packed_and_unpacked() {
    assert_eq!(ChangeDataEvent::decode(RESOLVED_TS_PACKED).unwrap(), resolved_ts_event());
    assert_eq!(ChangeDataEvent::decode(RESOLVED_TS_UNPACKED).unwrap(), resolved_ts_event());
    // We write the packed form, like TiKV.
    assert_eq!(resolved_ts_event().encode_to_vec(), RESOLVED_TS_PACKED);
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    #[rustfmt::skip]
    let row: &[u8] = &[
        0x08, 0x64,                         // 1 start_ts = 100
        0x98, 0x06, 0x2a,                   // 99 varint (99<<3|0 = 792) = 42
        0x18, 0x02,                         // 3 type = COMMIT
        0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, // 99 fixed64 (99<<3|1 = 793)
        0x9a, 0x06, 0x03, b'a', b'b', b'c', // 99 length-delimited (99<<3|2 = 794)
        0x9b, 0x06,                         // 99 group start (99<<3|3 = 795)
          0x08, 0x01,                       //   1 varint inside the group
          0x9b, 0x06, 0x9c, 0x06,           //   a nested empty group 99
        0x9c, 0x06,                         // 99 group end (99<<3|4 = 796)
        0x9d, 0x06, 1, 2, 3, 4,             // 99 fixed32 (99<<3|5 = 797)
        0x2a, 0x01, b'k',                   // 5 key
    ];
    let decoded = event::Row::decode(row).unwrap();
    assert_eq!(
        decoded,
        event::Row {
            start_ts: 100,
            r#type: event::LogType::Commit.into(),
            key: Bytes::from_static(b"k"),
            ..event::Row::default()
        }
    );

    // Unknown top-level fields of ChangeDataEvent (a later addition, say) and an unknown oneof
    // member of Event (field 9) are skipped too.
    let mut frame = ENTRIES_EVENT.to_vec();
    frame.extend_from_slice(&[0x9a, 0x06, 0x02, 0x08, 0x01]);
    frame.extend_from_slice(&[0x0a, 0x04, 0x08, 0x03, 0x4a, 0x00]);
    let decoded = ChangeDataEvent::decode(frame.as_slice()).unwrap();
    assert_eq!(decoded.events[0], entries_event().events[0]);
    assert_eq!(decoded.events[1], cdcpb::Event { region_id: 3, ..cdcpb::Event::default() });
}

#[test]
fn unknown_enum_values_keep_the_raw_value_and_fall_back_to_the_default() {
    #[rustfmt::skip]
    let row: &[u8] = &[
        0x18, 0x2a, // 3 type = 42 (no such LogType)
        0x20, 0x07, // 4 op_type = 7 (no such OpType)
    ];
    let decoded = event::Row::decode(row).unwrap();
    assert_eq!(decoded.r#type, 42);
    assert_eq!(decoded.r#type(), event::LogType::Unknown);
    assert!(event::LogType::try_from(decoded.r#type).is_err());
    assert_eq!(decoded.op_type, 7);
    assert_eq!(decoded.op_type(), event::row::OpType::Unknown);
    // The raw value survives a round trip.
    assert_eq!(decoded.encode_to_vec(), row);

    // A negative enum value is a 10-byte varint.
    #[rustfmt::skip]
    let negative: &[u8] = &[
        0x58, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // 11 kv_api = -1
    ];
    let decoded = ChangeDataRequest::decode(negative).unwrap();
    assert_eq!(decoded.kv_api, -1);
    assert_eq!(decoded.kv_api(), change_data_request::KvApi::TiDb);
}

#[test]
fn truncated_frames_fail_to_decode() {
    // These frames are one top-level field each, so every non-empty proper prefix cuts a field.
    for frame in [ENTRIES_EVENT, RESOLVED_TS_PACKED, RESOLVED_TS_UNPACKED] {
        assert_eq!(ChangeDataEvent::decode(&frame[..0]).unwrap(), ChangeDataEvent::default());
        for len in 1..frame.len() {
            assert!(
                ChangeDataEvent::decode(&frame[..len]).is_err(),
                "prefix of {len} of {frame:02x?} decoded"
            );
        }
    }
    // A request can be cut between two top-level fields; everywhere else it must fail.
    for len in 0..FULL_REGISTER.len() {
        let result = ChangeDataRequest::decode(&FULL_REGISTER[..len]);
        assert_eq!(
            result.is_ok(),
            FULL_REGISTER_FIELD_ENDS.contains(&len),
            "prefix of {len}: {result:?}"
        );
    }
}

#[test]
fn garbage_frames_fail_to_decode() {
    let deep_lock_info = {
        // LockInfo.shared_lock_infos (12) nested past prost's recursion limit of 100.
        let mut frame = Vec::new();
        for _ in 0..150 {
            let mut outer = vec![0x62];
            prost::encoding::encode_varint(frame.len() as u64, &mut outer);
            outer.extend_from_slice(&frame);
            frame = outer;
        }
        frame
    };
    #[rustfmt::skip]
    let garbage: &[&[u8]] = &[
        &[0x00],                                // field number 0
        &[0x0f],                                // wire type 7
        &[0x0e],                                // wire type 6
        &[0xff; 16],                            // a tag varint longer than 10 bytes
        &[0x0a, 0x05, 0x01],                    // length past the end of the frame
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],  // a huge length
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // length overflow
        &[0x08, 0x01],                          // events (a message) sent as a varint
        &[0x15, 1, 2, 3, 4],                    // resolved_ts (a message) sent as fixed32
        &[0x0c],                                // a group end with no start
        &[0x9b, 0x06, 0x08, 0x01],              // a group start with no end
        &[0x9b, 0x06, 0x08, 0x01, 0xa4, 0x06],  // a group closed with the wrong field number
        &[0x0a, 0x02, 0x1a, 0x05],              // a sub-message cut inside a whole field
    ];
    for frame in garbage {
        assert!(ChangeDataEvent::decode(*frame).is_err(), "{frame:02x?} decoded");
        assert!(ChangeDataRequest::decode(*frame).is_err(), "{frame:02x?} decoded");
    }
    // Event.error.compatibility.required_version is not UTF-8.
    let not_utf8: &[u8] = &[0x0a, 0x07, 0x2a, 0x05, 0x2a, 0x03, 0x0a, 0x01, 0xff];
    assert!(ChangeDataEvent::decode(not_utf8).is_err());
    let error = kvrpcpb::LockInfo::decode(deep_lock_info.as_slice()).unwrap_err();
    assert!(error.to_string().contains("recursion"), "{error}");
    // A header whose version is not UTF-8.
    assert!(ChangeDataRequest::decode(&[0x0a, 0x03, 0x12, 0x01, 0xff][..]).is_err());
}

#[test]
fn pseudo_random_frames_never_panic() {
    // A fixed xorshift stream: deterministic, and biased towards bytes that look like tags.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [ENTRIES_EVENT, RESOLVED_TS_PACKED, FULL_REGISTER];
    for round in 0..20_000 {
        let mut frame = seeds[round % seeds.len()].to_vec();
        let edits = (next() % 4) + 1;
        for _ in 0..edits {
            let position = (next() as usize) % frame.len();
            frame[position] = next() as u8;
        }
        frame.truncate((next() as usize) % (frame.len() + 1));
        // Only "no panic" is checked: a mutated frame may well still be valid.
        let _ = ChangeDataEvent::decode(frame.as_slice());
        let _ = ChangeDataRequest::decode(frame.as_slice());
        let _ = pdpb::GetMembersResponse::decode(frame.as_slice());
        let _ = pdpb::TsoResponse::decode(frame.as_slice());
        let _ = kvrpcpb::ScanLockResponse::decode(frame.as_slice());
    }
}

#[test]
fn pd_get_members_and_tso_responses_decode_from_hand_built_bytes() {
    #[rustfmt::skip]
    const MEMBER: &[u8] = &[
        0x0a, 0x04, b'p', b'd', b'-', b'1', // Member 1 name
        0x10, 0x01,                         // Member 2 member_id = 1
        0x22, 0x0d,                         // Member 4 client_urls[0], 13 bytes
          b'h', b't', b't', b'p', b':', b'/', b'/', b'a', b':', b'2', b'3', b'7', b'9',
    ];
    let mut frame = vec![
        0x0a, 0x02, 0x08, 0x07, // 1 header { 1 cluster_id = 7 }
        0x12, 0x17, // 2 members[0], 23 bytes
    ];
    frame.extend_from_slice(MEMBER);
    frame.extend_from_slice(&[0x1a, 0x17]); // 3 leader, 23 bytes
    frame.extend_from_slice(MEMBER);
    // 5 tso_allocator_leaders: one map entry { 1 key = "dc-1", 2 value = Member }, 31 bytes.
    frame.extend_from_slice(&[0x2a, 0x1f, 0x0a, 0x04, b'd', b'c', b'-', b'1', 0x12, 0x17]);
    frame.extend_from_slice(MEMBER);

    let member = pdpb::Member {
        name: "pd-1".to_owned(),
        member_id: 1,
        client_urls: vec!["http://a:2379".to_owned()],
        ..pdpb::Member::default()
    };
    let decoded = pdpb::GetMembersResponse::decode(frame.as_slice()).unwrap();
    assert_eq!(
        decoded,
        pdpb::GetMembersResponse {
            header: Some(pdpb::ResponseHeader { cluster_id: 7, error: None }),
            members: vec![member.clone()],
            leader: Some(member.clone()),
            etcd_leader: None,
            tso_allocator_leaders: [("dc-1".to_owned(), member)].into_iter().collect(),
        }
    );

    #[rustfmt::skip]
    let tso: &[u8] = &[
        0x0a, 0x02, 0x08, 0x07,                   // 1 header { 1 cluster_id = 7 }
        0x10, 0x03,                               // 2 count = 3
        0x1a, 0x09,                               // 3 timestamp, 9 bytes
          0x08, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, //   1 physical = 1_700_000_000_000 (int64)
          0x10, 0x0c,                             //   2 logical = 12 (int64)
    ];
    let decoded = pdpb::TsoResponse::decode(tso).unwrap();
    assert_eq!(
        decoded,
        pdpb::TsoResponse {
            header: Some(pdpb::ResponseHeader { cluster_id: 7, error: None }),
            count: 3,
            timestamp: Some(pdpb::Timestamp {
                physical: 1_700_000_000_000,
                logical: 12,
                suffix_bits: 0,
            }),
        }
    );

    // GetClusterInfoRequest carries a ResponseHeader upstream: its field 2 is a message, so
    // a sender_id varint there would break PD's decoder.
    let request = pdpb::GetClusterInfoRequest {
        header: Some(pdpb::ResponseHeader { cluster_id: 7, error: None }),
    };
    assert_eq!(request.encode_to_vec(), [0x0a, 0x02, 0x08, 0x07]);

    // A PD error in a response header.
    let error_header: &[u8] = &[0x0a, 0x04, 0x12, 0x02, 0x08, 0x0c]; // header { error { type 12 } }
    let decoded = pdpb::BatchScanRegionsResponse::decode(error_header).unwrap();
    let error = decoded.header.unwrap().error.unwrap();
    assert_eq!(error.r#type(), pdpb::ErrorType::RegionsNotContainAllKeyRange);
}

#[test]
fn region_errors_in_cdc_events_decode() {
    #[rustfmt::skip]
    let not_leader: &[u8] = &[
        0x0a, 0x10,                   // ChangeDataEvent 1 events[0], 16 bytes
          0x08, 0x03,                 //   Event 1 region_id = 3
          0x2a, 0x0a,                 //   Event 5 error, 10 bytes
            0x0a, 0x08,               //     Error 1 not_leader, 8 bytes
              0x08, 0x03,             //       NotLeader 1 region_id = 3
              0x12, 0x04,             //       NotLeader 2 leader, 4 bytes
                0x08, 0x0b,           //         Peer 1 id = 11
                0x10, 0x02,           //         Peer 2 store_id = 2
          0x38, 0x07,                 //   Event 7 request_id = 7
    ];
    let decoded = ChangeDataEvent::decode(not_leader).unwrap();
    let expected_error = cdcpb::Error {
        not_leader: Some(errorpb::NotLeader {
            region_id: 3,
            leader: Some(metapb::Peer { id: 11, store_id: 2, ..metapb::Peer::default() }),
        }),
        ..cdcpb::Error::default()
    };
    assert_eq!(
        decoded.events,
        [cdcpb::Event {
            region_id: 3,
            index: 0,
            request_id: 7,
            event: Some(event::Event::Error(expected_error)),
        }]
    );

    #[rustfmt::skip]
    let congested: &[u8] = &[
        0x0a, 0x0a,                   // ChangeDataEvent 1 events[0], 10 bytes
          0x08, 0x03,                 //   Event 1 region_id = 3
          0x2a, 0x04,                 //   Event 5 error, 4 bytes
            0x42, 0x02,               //     Error 8 congested (8<<3|2), 2 bytes
              0x08, 0x03,             //       Congested 1 region_id = 3
          0x38, 0x07,                 //   Event 7 request_id = 7
    ];
    let decoded = ChangeDataEvent::decode(congested).unwrap();
    let Some(event::Event::Error(error)) = &decoded.events[0].event else {
        panic!("expected an error, got {decoded:?}");
    };
    assert_eq!(error.congested, Some(cdcpb::Congested { region_id: 3 }));
    assert_eq!(error.not_leader, None);

    #[rustfmt::skip]
    let epoch_not_match: &[u8] = &[
        0x0a, 0x1e,                   // ChangeDataEvent 1 events[0], 30 bytes
          0x08, 0x04,                 //   Event 1 region_id = 4
          0x2a, 0x18,                 //   Event 5 error, 24 bytes
            0x1a, 0x16,               //     Error 3 epoch_not_match, 22 bytes
              0x0a, 0x14,             //       EpochNotMatch 1 current_regions[0], 20 bytes
                0x08, 0x04,           //         Region 1 id = 4
                0x12, 0x01, b'a',     //         Region 2 start_key
                0x1a, 0x01, b'b',     //         Region 3 end_key
                0x22, 0x04,           //         Region 4 region_epoch, 4 bytes
                  0x08, 0x01,         //           conf_ver = 1
                  0x10, 0x02,         //           version = 2
                0x2a, 0x04,           //         Region 5 peers[0], 4 bytes
                  0x08, 0x05,         //           Peer 1 id = 5
                  0x10, 0x01,         //           Peer 2 store_id = 1
          0x38, 0x07,                 //   Event 7 request_id = 7
    ];
    let decoded = ChangeDataEvent::decode(epoch_not_match).unwrap();
    let Some(event::Event::Error(error)) = &decoded.events[0].event else {
        panic!("expected an error, got {decoded:?}");
    };
    let regions = &error.epoch_not_match.as_ref().unwrap().current_regions;
    assert_eq!(
        regions,
        &[metapb::Region {
            id: 4,
            start_key: Bytes::from_static(b"a"),
            end_key: Bytes::from_static(b"b"),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 2 }),
            peers: vec![metapb::Peer { id: 5, store_id: 1, ..metapb::Peer::default() }],
            ..metapb::Region::default()
        }]
    );
}

#[test]
fn scan_lock_response_decodes() {
    #[rustfmt::skip]
    let frame: &[u8] = &[
        0x1a, 0x0d,             // ScanLockResponse 3 locks[0], 13 bytes
          0x0a, 0x01, b'p',     //   LockInfo 1 primary_lock
          0x10, 0x05,           //   LockInfo 2 lock_version = 5
          0x1a, 0x01, b'k',     //   LockInfo 3 key
          0x20, 0xb8, 0x17,     //   LockInfo 4 lock_ttl = 3000
          0x40, 0x01,           //   LockInfo 8 use_async_commit = true
    ];
    let decoded = kvrpcpb::ScanLockResponse::decode(frame).unwrap();
    assert_eq!(
        decoded.locks,
        [kvrpcpb::LockInfo {
            primary_lock: Bytes::from_static(b"p"),
            lock_version: 5,
            key: Bytes::from_static(b"k"),
            lock_ttl: 3000,
            use_async_commit: true,
            ..kvrpcpb::LockInfo::default()
        }]
    );
    assert_eq!(decoded.locks[0].lock_type(), kvrpcpb::Op::Put);
}

/// A transport that records the path of every request and fails it without sending anything.
#[derive(Clone, Default)]
struct RecordPaths(Arc<Mutex<Vec<String>>>);

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for RecordPaths {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::io::Error;
    type Future = core::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        self.0.lock().unwrap().push(request.uri().path().to_owned());
        core::future::ready(Err(std::io::Error::other("recorded")))
    }
}

/// Runs a future that never waits (the transport above answers at once).
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the recording transport never waits"),
    }
}

#[test]
fn generated_clients_use_the_upstream_grpc_paths() {
    let transport = RecordPaths::default();
    let mut cdc = cdcpb::change_data_client::ChangeDataClient::new(transport.clone());
    let mut pd = pdpb::pd_client::PdClient::new(transport.clone());
    let mut tikv = tikvpb::tikv_client::TikvClient::new(transport.clone());
    let requests = || tonic::codegen::tokio_stream::empty::<ChangeDataRequest>();

    assert!(run_now(cdc.event_feed(requests())).is_err());
    assert!(run_now(cdc.event_feed_v2(requests())).is_err());
    assert!(run_now(pd.get_members(pdpb::GetMembersRequest::default())).is_err());
    assert!(run_now(pd.tso(tonic::codegen::tokio_stream::empty::<pdpb::TsoRequest>())).is_err());
    assert!(run_now(pd.batch_scan_regions(pdpb::BatchScanRegionsRequest::default())).is_err());
    assert!(run_now(tikv.kv_scan_lock(kvrpcpb::ScanLockRequest::default())).is_err());

    assert_eq!(
        *transport.0.lock().unwrap(),
        [
            "/cdcpb.ChangeData/EventFeed",
            "/cdcpb.ChangeData/EventFeedV2",
            "/pdpb.PD/GetMembers",
            "/pdpb.PD/Tso",
            "/pdpb.PD/BatchScanRegions",
            "/tikvpb.Tikv/KvScanLock",
        ]
    );

    assert_eq!(cdcpb::change_data_server::SERVICE_NAME, "cdcpb.ChangeData");
    assert_eq!(pdpb::pd_server::SERVICE_NAME, "pdpb.PD");
    assert_eq!(tikvpb::tikv_server::SERVICE_NAME, "tikvpb.Tikv");
}

#[test]
fn committed_code_routes_every_method_to_its_upstream_path() {
    let sources = [
        include_str!("../src/generated/cdcpb.rs"),
        include_str!("../src/generated/pdpb.rs"),
        include_str!("../src/generated/tikvpb.rs"),
    ]
    .concat();
    for path in [
        "/cdcpb.ChangeData/EventFeed",
        "/cdcpb.ChangeData/EventFeedV2",
        "/pdpb.PD/GetMembers",
        "/pdpb.PD/GetClusterInfo",
        "/pdpb.PD/Tso",
        "/pdpb.PD/GetRegion",
        "/pdpb.PD/GetRegionByID",
        "/pdpb.PD/ScanRegions",
        "/pdpb.PD/BatchScanRegions",
        "/pdpb.PD/GetStore",
        "/pdpb.PD/GetAllStores",
        "/tikvpb.Tikv/KvScanLock",
        "/tikvpb.Tikv/KvResolveLock",
        "/tikvpb.Tikv/KvCheckTxnStatus",
        "/tikvpb.Tikv/KvCheckSecondaryLocks",
    ] {
        // Once in the client (`from_static("...")`) and once in the server's `match`.
        let quoted = format!("\"{path}\"");
        assert_eq!(sources.matches(&quoted).count(), 2, "{path}");
    }
}
