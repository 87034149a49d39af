//! What can go wrong, as one typed [`Error`].

use core::fmt;

use crate::event::SubscriptionId;
use crate::region::RowError;

/// An error of the client or of one subscription.
///
/// Errors that end a subscription arrive on its event stream
/// ([`Subscription::recv`](crate::Subscription::recv)); the other subscriptions go on.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used (no PD endpoint, an unreadable TLS file, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// PD could not be reached or answered with an error.
    #[error(transparent)]
    Pd(kvfeed_regioncache::Error),
    /// PD or a store belongs to another cluster than the one the client works with: the
    /// endpoints are wrong. Never retried.
    #[error(
        "cluster id mismatch: {peer} belongs to cluster {got}, the client works with cluster {expected}"
    )]
    ClusterIdMismatch {
        /// Who answered for the other cluster.
        peer: ClusterPeer,
        /// The cluster id the client works with (the configured one, else PD's).
        expected: u64,
        /// The cluster id the peer reported (0 when it refused ours without saying its own).
        got: u64,
    },
    /// A store is too old for a request this client sends.
    #[error("store {store_id} is incompatible: it requires client version {required_version}")]
    Incompatible {
        /// The store.
        store_id: u64,
        /// The version TiKV asked for.
        required_version: String,
    },
    /// A region kept sending a row that cannot be interpreted, on every attempt
    /// ([`Config::bad_row_attempts`](crate::Config::bad_row_attempts) in a row): the
    /// subscription cannot go on without losing it.
    #[error(
        "region {region_id} sent a row that cannot be interpreted {attempts} times in a row: {error}"
    )]
    BadRow {
        /// The region.
        region_id: u64,
        /// The attempts made.
        attempts: u32,
        /// What is wrong with the row (the last attempt's).
        error: RowError,
    },
    /// A prewrite value spilled to local disk ([`Config::spill_dir`](crate::Config::spill_dir))
    /// could not be read back at its commit: the row cannot be delivered, and the subscription
    /// ends (resubscribe from its checkpoint once the disk is fixed).
    #[error("region {region_id}: {error}")]
    Spill {
        /// The region whose row was lost.
        region_id: u64,
        /// The read that failed ([`RowError::SpillRead`]).
        error: RowError,
    },
    /// A subscription (or a snapshot read) cannot start this far back: the history it needs may already be gone
    /// (the start ts is below the cluster's GC safe point, or below PD's minimum service safe
    /// point, which may be this client's own: a safe point never moves back).
    #[error(
        "start ts {start_ts} is below the GC safe point {safe_point}: the history it needs may be gone"
    )]
    StartTsBelowGcSafePoint {
        /// The start ts asked for.
        start_ts: u64,
        /// The safe point it is below.
        safe_point: u64,
    },
    /// PD refused to hold the client's GC safe point at the subscription's checkpoint (the safe
    /// point expired while PD could not be reached, or GC passed it): history the subscription
    /// still needs may be gone, so it stopped rather than miss changes silently.
    #[error(
        "the GC safe point passed the checkpoint {checkpoint}: PD's minimum is {safe_point} (held by {service_id})"
    )]
    GcSafePointPassed {
        /// The subscription's checkpoint (the last resolved ts its subscriber read).
        checkpoint: u64,
        /// PD's minimum service safe point.
        safe_point: u64,
        /// The service holding that minimum.
        service_id: String,
    },
    /// [`Client::resolve_lock`](crate::Client::resolve_lock) was asked for a target too recent:
    /// at or above PD's clock minus [`LOCK_RESOLVE_MARGIN`](crate::LOCK_RESOLVE_MARGIN).
    #[error("lock-resolution target {target_ts} is too recent: it must be below {limit}")]
    LockTargetTooRecent {
        /// The target asked for.
        target_ts: u64,
        /// The highest target allowed now (0 while PD's clock is not known yet).
        limit: u64,
    },
    /// A snapshot or point read could not go on: a store refused it with a key error, a region
    /// boundary could not be read as a key, a lock could not be resolved, or its part of the
    /// span kept failing (the logs say how).
    #[error("read failed at key {key:02x?}: {message}")]
    Read {
        /// The raw key the read was at (empty when unknown).
        key: bytes::Bytes,
        /// What went wrong.
        message: String,
    },
    /// No subscription has this id (never subscribed, or already drained).
    #[error("unknown subscription {0}")]
    UnknownSubscription(SubscriptionId),
    /// The subscription's span is not inside the range it was asked for.
    #[error("invalid span: {0}")]
    InvalidSpan(String),
    /// [`Client::run`](crate::Client::run) was called while it is already running.
    #[error("the client is already running")]
    AlreadyRunning,
    /// A service task of the client ended unexpectedly (a bug in kvfeed): the client stopped.
    #[error("internal error: {0}")]
    Internal(String),
    /// The client was shut down.
    #[error("the client was shut down")]
    Shutdown,
}

/// Who reported a cluster id other than the client's ([`Error::ClusterIdMismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterPeer {
    /// PD.
    Pd,
    /// The TiKV store with this id.
    Store(u64),
}

impl fmt::Display for ClusterPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pd => f.write_str("PD"),
            Self::Store(id) => write!(f, "store {id}"),
        }
    }
}

impl From<kvfeed_regioncache::Error> for Error {
    /// PD's cluster-id mismatch becomes [`Error::ClusterIdMismatch`]; anything else is
    /// [`Error::Pd`].
    fn from(error: kvfeed_regioncache::Error) -> Self {
        match error {
            kvfeed_regioncache::Error::ClusterIdMismatch { expected, got } => {
                Self::ClusterIdMismatch { peer: ClusterPeer::Pd, expected, got }
            }
            other => Self::Pd(other),
        }
    }
}
