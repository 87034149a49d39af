//! What can go wrong, as one typed [`Error`].

use crate::event::SubscriptionId;

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
    Pd(#[from] kvfeed_regioncache::Error),
    /// A store belongs to another cluster than PD: the endpoints are wrong.
    #[error("store {store_id} belongs to cluster {store_cluster}, PD to cluster {client_cluster}")]
    ClusterIdMismatch {
        /// The store that refused the request.
        store_id: u64,
        /// The store's cluster id.
        store_cluster: u64,
        /// The cluster id the client works with (PD's).
        client_cluster: u64,
    },
    /// A store is too old for a request this client sends.
    #[error("store {store_id} is incompatible: it requires client version {required_version}")]
    Incompatible {
        /// The store.
        store_id: u64,
        /// The version TiKV asked for.
        required_version: String,
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
