//! Typed errors: [`TransportError`] for calls that fail before a region reaches a stream,
//! [`StreamError`] for the failure of a stream that carried registered regions, and
//! [`FrameError`] for a frame that does not decode.

use alloc::string::{String, ToString};
use alloc::sync::Arc;

use tonic::Code;

/// A call on [`Transport`](crate::Transport) failed; nothing was registered.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request is malformed (for example a region id of 0).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The store address cannot be turned into an endpoint.
    #[error("invalid address {address:?} of store {store_id}: {reason}")]
    InvalidAddress {
        /// The store.
        store_id: u64,
        /// The address given.
        address: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Dialling the store failed or timed out.
    #[error("cannot connect to store {store_id} at {address}: {reason}")]
    Connect {
        /// The store.
        store_id: u64,
        /// Its address.
        address: String,
        /// What went wrong, with the error's sources.
        reason: String,
    },
    /// The store answered the `EventFeedV2` probe with an unexpected status (neither a clean
    /// end, meaning multiplexing, nor `UNIMPLEMENTED`, meaning `EventFeed` only).
    #[error("store {store_id} at {address} failed the EventFeedV2 probe: {code:?}: {message}")]
    Probe {
        /// The store.
        store_id: u64,
        /// Its address.
        address: String,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// A TLS file cannot be read (the error names it).
    #[error(transparent)]
    Tls(#[from] kvfeed_base::TlsError),
}

/// Why a stream failed, reported with every region it carried
/// ([`StreamEvent::RegionFailed`](crate::StreamEvent::RegionFailed)).
///
/// Cheap to clone: one failure is reported once per region.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Opening or reading the stream failed with a gRPC status (a reset stream, a dropped
    /// connection, a store going away, an oversized message, ...).
    #[error("stream failed with gRPC status {code:?}: {message}")]
    Status {
        /// The status code.
        code: Code,
        /// The status message.
        message: Arc<str>,
    },
    /// A frame was not a valid `ChangeDataEvent`.
    #[error("{0}")]
    Decode(FrameError),
    /// The store ended the stream (a clean end of stream, which TiKV never sends while regions
    /// are registered).
    #[error("the store ended the stream")]
    Eof,
    /// The request direction of the stream closed while a request was being sent.
    #[error("the request direction of the stream closed")]
    SendClosed,
    /// [`Transport::remove_store`](crate::Transport::remove_store) removed the store.
    #[error("the store was removed")]
    StoreRemoved,
    /// The store was registered again with another address, or another store took its address.
    #[error("the store's address changed")]
    AddressChanged,
    /// The transport was dropped.
    #[error("the transport shut down")]
    Shutdown,
    /// An `EventFeed` (V1) call was closed so that a region deregistered from it could be
    /// registered again: such a store cannot deregister one region, so the old registration kept
    /// streaming on that call until it closed.
    #[error("the EventFeed call was replaced to re-register a region")]
    Replaced,
    /// A multiplexed stream was reset because the store never ended a deregistered
    /// registration (no answer to the Deregister within `TransportConfig::drain_timeout`), while
    /// the region was to be registered on it again: its events would have been dropped forever.
    #[error("the store did not end a deregistered registration in time")]
    DrainTimeout,
}

impl StreamError {
    /// Whether the stream ended for a cause on this side (the transport replaced, removed or
    /// re-addressed it, or shut down), not because the store or the network failed: its regions
    /// are to be registered again, and the store is not to be suspected.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::StoreRemoved | Self::AddressChanged | Self::Shutdown | Self::Replaced)
    }

    /// The error for a gRPC status.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self::Status { code: status.code(), message: Arc::from(status.message()) }
    }
}

/// A frame is not a valid `ChangeDataEvent` ([`decode_frame`](crate::demux::decode_frame)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed ChangeDataEvent frame: {0}")]
pub struct FrameError(prost::DecodeError);

impl FrameError {
    pub(crate) fn new(error: prost::DecodeError) -> Self {
        Self(error)
    }
}

/// Formats an error with its chain of sources (tonic's transport errors say little at the top).
pub(crate) fn chain(error: &(dyn core::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
