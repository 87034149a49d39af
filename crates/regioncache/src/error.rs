//! Errors of the PD client and the region cache.
//!
//! Every way PD (or the network) can fail us has a variant: the caller decides from the variant
//! whether to retry, re-divide a range, or give up ([`Error::is_retryable`] names the transient
//! ones). Nothing a peer sends makes this crate panic; garbage becomes
//! [`Error::InvalidRegion`], [`Error::InvalidRegionList`], [`Error::InvalidStore`] or
//! [`Error::InvalidResponse`].

use crate::meta::{InvalidRegion, RegionId, StoreId};

/// What went wrong talking to PD.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// PD belongs to another cluster than the one this client first talked to (or was told to
    /// expect). Never retried: the endpoints are wrong.
    #[error("cluster id mismatch: expected {expected}, PD says {got}")]
    ClusterIdMismatch {
        /// The cluster id this client works with.
        expected: u64,
        /// The cluster id PD reported (0 when PD refused ours without saying its own).
        got: u64,
    },
    /// PD answered with an error in its response header.
    #[error("PD {method} failed: {kind:?}: {message}")]
    Pd {
        /// The PD method.
        method: &'static str,
        /// The error type of the header.
        kind: PdErrorKind,
        /// PD's message.
        message: String,
    },
    /// No PD member could serve the call, after the configured retries.
    #[error("PD unavailable for {method}: {message}")]
    Unavailable {
        /// The PD method.
        method: &'static str,
        /// The last failure seen.
        message: String,
    },
    /// The TLS handshake with a PD member failed (a certificate the CA does not vouch for, a
    /// server speaking plain text). Retried like [`Error::Unavailable`] once PD has answered;
    /// before that (at connect time) it is a configuration problem and returned at once.
    #[error("TLS handshake with {addr} failed: {reason}")]
    TlsHandshake {
        /// The member's address.
        addr: String,
        /// What rustls reported.
        reason: String,
    },
    /// The call did not complete within the configured timeout, after the configured retries.
    #[error("PD {method} timed out")]
    Timeout {
        /// The PD method.
        method: &'static str,
    },
    /// PD does not serve this method (gRPC `UNIMPLEMENTED`).
    #[error("PD does not implement {method}")]
    Unimplemented {
        /// The PD method.
        method: &'static str,
    },
    /// PD failed the call with a gRPC status that is neither transient nor otherwise mapped.
    #[error("PD {method} failed with gRPC status {code}: {message}")]
    Grpc {
        /// The PD method.
        method: &'static str,
        /// The gRPC status code, as numbered by gRPC (3 is `INVALID_ARGUMENT`, 7
        /// `PERMISSION_DENIED`, ...).
        code: i32,
        /// The status message.
        message: String,
    },
    /// PD sent region metadata that breaks a [`crate::Region`] invariant.
    #[error("PD sent invalid region {region_id}: {reason}")]
    InvalidRegion {
        /// The region id as sent.
        region_id: RegionId,
        /// What is wrong with it.
        reason: InvalidRegion,
    },
    /// PD answered a scan with a region list that is not sorted, overlaps itself, or strays
    /// outside the range scanned.
    #[error("PD sent an invalid region list: {0}")]
    InvalidRegionList(RegionListError),
    /// PD sent store metadata that cannot be used.
    #[error("PD sent invalid store {store_id}: {reason}")]
    InvalidStore {
        /// The store id as sent.
        store_id: StoreId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A response lacks something PD always sends, or contradicts the request.
    #[error("PD sent an invalid {method} response: {reason}")]
    InvalidResponse {
        /// The PD method.
        method: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// PD does not know the store (`GetStore` of an unknown id).
    #[error("store {store_id} not found")]
    StoreNotFound {
        /// The store id asked for.
        store_id: StoreId,
    },
    /// The store is a tombstone: removed from the cluster for good.
    #[error("store {store_id} is a tombstone")]
    StoreTombstone {
        /// The store id asked for.
        store_id: StoreId,
    },
    /// PD's TSO went backwards (or repeated a timestamp). Never handed out.
    #[error("TSO not monotonic: {got} after {last}")]
    TsoNotMonotonic {
        /// The largest timestamp handed out before.
        last: u64,
        /// The first timestamp of the offending batch.
        got: u64,
    },
    /// The client configuration is unusable (no endpoint, a malformed URL, bad TLS material).
    #[error("invalid PD client configuration: {0}")]
    Config(String),
    /// A TLS file of [`PdConfig::tls`](crate::PdConfig::tls) cannot be read.
    #[error(transparent)]
    Tls(#[from] kvfeed_base::TlsError),
    /// The client's background TSO task is gone (the runtime is shutting down).
    #[error("PD client closed")]
    Closed,
}

impl Error {
    /// Whether trying again later may succeed without any change on the caller's side: PD was
    /// unavailable or slow.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::TlsHandshake { .. }
                | Self::Timeout { .. }
                | Self::Closed
        )
    }
}

/// The error type of a PD response header (`pdpb.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PdErrorKind {
    /// `UNKNOWN`: anything else, rate limiting and unknown store ids included.
    Unknown,
    /// `NOT_BOOTSTRAPPED`.
    NotBootstrapped,
    /// `STORE_TOMBSTONE`.
    StoreTombstone,
    /// `ALREADY_BOOTSTRAPPED`.
    AlreadyBootstrapped,
    /// `INCOMPATIBLE_VERSION`.
    IncompatibleVersion,
    /// `REGION_NOT_FOUND`.
    RegionNotFound,
    /// `GLOBAL_CONFIG_NOT_FOUND`.
    GlobalConfigNotFound,
    /// `DUPLICATED_ENTRY`.
    DuplicatedEntry,
    /// `ENTRY_NOT_FOUND`.
    EntryNotFound,
    /// `INVALID_VALUE`.
    InvalidValue,
    /// `DATA_COMPACTED`.
    DataCompacted,
    /// `REGIONS_NOT_CONTAIN_ALL_KEY_RANGE` (BatchScanRegions found holes).
    RegionsNotContainAllKeyRange,
    /// A value this client does not know.
    Other(i32),
}

/// Why a region list from a scan was refused. The cache is left untouched when this happens.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionListError {
    /// Two regions overlap, or a region starts before the previous one.
    #[error("region {right} overlaps or precedes region {left}")]
    Overlap {
        /// The earlier region in the list.
        left: RegionId,
        /// The later region in the list.
        right: RegionId,
    },
    /// A region id appears twice.
    #[error("region {region_id} appears twice")]
    DuplicateId {
        /// The repeated id.
        region_id: RegionId,
    },
    /// A region lies outside the range that was scanned.
    #[error("region {region_id} lies outside the scanned range")]
    OutOfRange {
        /// The region.
        region_id: RegionId,
    },
    /// More regions than the limit asked for.
    #[error("{got} regions for a limit of {limit}")]
    TooMany {
        /// Regions received.
        got: usize,
        /// The limit sent.
        limit: usize,
    },
}
