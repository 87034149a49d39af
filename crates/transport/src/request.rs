//! The send side: what the feed asks for ([`StoreTarget`], [`RegisterRequest`]) and the only
//! requests that ever reach the wire ([`WireRequest`]).
//!
//! Every wire request carries the header `{cluster_id, ticdc_version: "8.1.0"}`: TiKV takes a
//! stream's feature gates (batched resolved ts from 4.0.8, cluster id validation from 5.3.0) from
//! the first request of the stream and checks the cluster id on every Register. A
//! [`WireRequest`] can only be a Register or a Deregister: `NotifyTxnStatus`, which crashes TiKV,
//! cannot be built.

use alloc::string::String;

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, ChangeDataRequest, Header, change_data_request};
use kvfeed_proto::kvrpcpb::ExtraOp;
use kvfeed_span::Span;

use kvfeed_regioncache::RegionEpoch;

use crate::event::epoch_to_wire;

/// The client version announced in every request header (any semver >= 5.3.0 enables the feature
/// gates kvfeed relies on).
pub const TICDC_VERSION: &str = "8.1.0";

/// A store to send to: stores are identified by id; the address is where the id lives now.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreTarget {
    /// The store id (from PD).
    pub store_id: u64,
    /// Its gRPC address, `host:port` (or a full `http://` / `https://` URI).
    pub address: String,
}

/// A region registration: subscribe `span` of region `region_id` for subscription `request_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The subscription id; TiKV keys registrations by (request id, region id) per stream.
    pub request_id: u64,
    /// The region (never 0).
    pub region_id: u64,
    /// The region's epoch as known to the caller; a stale one is answered by EpochNotMatch.
    pub epoch: RegionEpoch,
    /// The part of the region to observe (encoded keys, clipped to the region by the caller).
    pub span: Span,
    /// The incremental scan covers commits after this ts.
    pub checkpoint_ts: u64,
}

/// A request that may be sent on a CDC stream: a Register or a Deregister, with the header.
///
/// Invariant: `0.request` is `Register` or `Deregister`, never `NotifyTxnStatus`; `0.header` is
/// set. The only constructors are [`WireRequest::register`] and [`WireRequest::deregister`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WireRequest(ChangeDataRequest);

/// How requests are built for one transport: the header and the per-client flags.
#[derive(Clone, Debug)]
pub(crate) struct RequestTemplate {
    /// The header every request carries.
    pub(crate) header: Header,
    /// Ask TiKV to drop rows written by CDC itself.
    pub(crate) filter_loop: bool,
}

impl RequestTemplate {
    pub(crate) fn new(cluster_id: u64, filter_loop: bool) -> Self {
        Self {
            header: Header { cluster_id, ticdc_version: String::from(TICDC_VERSION) },
            filter_loop,
        }
    }
}

impl WireRequest {
    /// A Register for `request`: region, epoch, span, checkpoint ts, `ReadOldValue`, the
    /// configured `filter_loop` and `kv_api` TiDB.
    pub(crate) fn register(template: &RequestTemplate, request: &RegisterRequest) -> Self {
        Self(ChangeDataRequest {
            header: Some(template.header.clone()),
            region_id: request.region_id,
            region_epoch: Some(epoch_to_wire(request.epoch)),
            checkpoint_ts: request.checkpoint_ts,
            // Empty means unbounded on both sides, as in `Span`.
            start_key: Bytes::copy_from_slice(request.span.start().as_bytes()),
            end_key: Bytes::copy_from_slice(request.span.end().as_bytes()),
            request_id: request.request_id,
            extra_op: ExtraOp::ReadOldValue as i32,
            kv_api: change_data_request::KvApi::TiDb as i32,
            filter_loop: template.filter_loop,
            scan_priority: cdcpb::ScanPriority::Unknown as i32,
            request: Some(change_data_request::Request::Register(change_data_request::Register {})),
        })
    }

    /// A Deregister of one region (`Some`) or of every region of the subscription (`None`, sent
    /// as region id 0).
    pub(crate) fn deregister(
        template: &RequestTemplate,
        request_id: u64,
        region_id: Option<u64>,
    ) -> Self {
        Self(ChangeDataRequest {
            header: Some(template.header.clone()),
            region_id: region_id.unwrap_or(0),
            request_id,
            request: Some(change_data_request::Request::Deregister(
                change_data_request::Deregister {},
            )),
            ..ChangeDataRequest::default()
        })
    }

    /// The message to encode.
    pub(crate) fn as_message(&self) -> &ChangeDataRequest {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use kvfeed_span::EncodedKey;
    use prost::Message as _;

    use super::*;

    fn template() -> RequestTemplate {
        RequestTemplate::new(7, true)
    }

    #[test]
    fn register_carries_everything_tikv_needs() {
        let span = Span::new(EncodedKey::encode(b"a"), EncodedKey::default()).unwrap();
        let request = RegisterRequest {
            request_id: 3,
            region_id: 11,
            epoch: RegionEpoch { conf_ver: 2, version: 5 },
            span: span.clone(),
            checkpoint_ts: 400,
        };
        let wire = WireRequest::register(&template(), &request);
        // Through the wire and back, as TiKV sees it.
        let seen = ChangeDataRequest::decode(wire.as_message().encode_to_vec().as_slice()).unwrap();
        assert_eq!(seen.header, Some(Header { cluster_id: 7, ticdc_version: "8.1.0".into() }));
        assert_eq!((seen.request_id, seen.region_id, seen.checkpoint_ts), (3, 11, 400));
        assert_eq!(
            seen.region_epoch,
            Some(kvfeed_proto::metapb::RegionEpoch { conf_ver: 2, version: 5 })
        );
        assert_eq!(seen.start_key.as_ref(), span.start().as_bytes());
        assert!(seen.end_key.is_empty());
        assert_eq!(seen.extra_op, ExtraOp::ReadOldValue as i32);
        assert_eq!(seen.kv_api, change_data_request::KvApi::TiDb as i32);
        assert!(seen.filter_loop);
        assert_eq!(
            seen.request,
            Some(change_data_request::Request::Register(change_data_request::Register {}))
        );
    }

    #[test]
    fn deregister_is_a_real_deregister_with_a_header() {
        for (region, wire_region) in [(None, 0), (Some(9), 9)] {
            let wire = WireRequest::deregister(&template(), 3, region);
            let bytes = wire.as_message().encode_to_vec();
            let seen = ChangeDataRequest::decode(bytes.as_slice()).unwrap();
            assert_eq!(seen.header.as_ref().map(|h| h.cluster_id), Some(7));
            assert_eq!((seen.request_id, seen.region_id), (3, wire_region));
            // Field 13 present on the wire (reference bug 3: an empty oneof is read as Register).
            assert!(bytes.windows(2).any(|w| w == [13 << 3 | 2, 0]));
            assert_eq!(
                seen.request,
                Some(change_data_request::Request::Deregister(change_data_request::Deregister {}))
            );
        }
    }
}
