//! The connection pool of one store: HTTP/2 connections, each probed once for `EventFeedV2`.
//!
//! A connection carries up to `max_calls_per_connection` calls; the pool dials another when all
//! are full (one dial at a time per store). Every call holds a [`Lease`]; a connection leaves the
//! pool when its last lease is dropped, or stops taking new calls once a call on it failed
//! (`broken`), so the next call dials and probes afresh: the mode of a store is re-probed after
//! every reconnect.
//!
//! Unary calls (lock resolution) take no lease: they share a healthy stream connection, or the
//! pool's one lazily connected unary channel when the store has no stream ([`Pool::unary_channel`]).
//!
//! The probe (reference §5.1, wire §7): open `EventFeedV2` with the metadata
//! `features: stream-multiplexing`, half-close at once and read once. A clean end (or
//! `CANCELLED`, or `UNKNOWN` "EOF") means multiplexing; `UNIMPLEMENTED` means an older TiKV, served
//! with `EventFeed`; anything else fails the dial.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::Mutex;

use kvfeed_base::lock;

use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::codec::FrameCodec;
use crate::error::{TransportError, chain};
use crate::request::WireRequest;

/// The gRPC path of `EventFeed`.
pub(crate) const EVENT_FEED: &str = "/cdcpb.ChangeData/EventFeed";
/// The gRPC path of `EventFeedV2`.
pub(crate) const EVENT_FEED_V2: &str = "/cdcpb.ChangeData/EventFeedV2";
/// The metadata key TiKV reads features from on `EventFeedV2`.
pub(crate) const FEATURES_KEY: &str = "features";
/// The only feature kvfeed asks for.
pub(crate) const STREAM_MULTIPLEXING: &str = "stream-multiplexing";

/// How a connection's store serves CDC streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `EventFeedV2` with stream multiplexing: one call carries every subscription.
    Multiplexed,
    /// `EventFeed` only: one call per subscription (and stream slot).
    PerSubscription,
}

/// One HTTP/2 connection and what its probe found.
#[derive(Debug)]
pub(crate) struct Conn {
    channel: Channel,
    mode: Mode,
    /// Set when a call on this connection failed: it takes no new calls.
    broken: AtomicBool,
}

/// A pool entry. Invariant: `calls >= 1` (an entry leaves the pool with its last lease).
#[derive(Debug)]
struct Entry {
    conn: Arc<Conn>,
    calls: usize,
}

/// The connections of one store.
#[derive(Debug)]
pub(crate) struct Pool {
    store_id: u64,
    address: String,
    endpoint: Endpoint,
    probe_timeout: Duration,
    max_calls: usize,
    entries: Arc<Mutex<Vec<Entry>>>,
    /// Held while dialling: one dial at a time per store.
    dialling: tokio::sync::Mutex<()>,
    /// The channel of unary calls while no stream connection is up: connected lazily, kept
    /// (tonic reconnects it) until the connections are retired.
    unary: Mutex<Option<Channel>>,
}

/// The right to run one call on a connection; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: Arc<Conn>,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Pool {
    pub(crate) fn new(
        store_id: u64,
        address: String,
        endpoint: Endpoint,
        probe_timeout: Duration,
        max_calls: usize,
    ) -> Self {
        Self {
            store_id,
            address,
            endpoint,
            probe_timeout,
            max_calls: max_calls.max(1),
            entries: Arc::default(),
            dialling: tokio::sync::Mutex::new(()),
            unary: Mutex::new(None),
        }
    }

    /// A lease on a healthy connection with room for a call, dialling and probing one if needed.
    pub(crate) async fn acquire(&self) -> Result<Lease, TransportError> {
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        let _dialling = self.dialling.lock().await;
        if let Some(lease) = self.try_lease() {
            return Ok(lease);
        }
        let channel = self.endpoint.connect().await.map_err(|error| TransportError::Connect {
            store_id: self.store_id,
            address: self.address.clone(),
            reason: chain(&error),
        })?;
        let mode = match tokio::time::timeout(self.probe_timeout, probe(channel.clone())).await {
            Ok(Ok(mode)) => mode,
            Ok(Err(status)) => {
                return Err(TransportError::Probe {
                    store_id: self.store_id,
                    address: self.address.clone(),
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
            Err(_elapsed) => {
                return Err(TransportError::Connect {
                    store_id: self.store_id,
                    address: self.address.clone(),
                    reason: "the EventFeedV2 probe timed out".to_owned(),
                });
            }
        };
        tracing::debug!(store_id = self.store_id, address = %self.address, ?mode, "connected");
        let conn = Arc::new(Conn { channel, mode, broken: AtomicBool::new(false) });
        lock(&self.entries).push(Entry { conn: Arc::clone(&conn), calls: 1 });
        Ok(Lease { conn, entries: Arc::clone(&self.entries) })
    }

    fn try_lease(&self) -> Option<Lease> {
        let mut entries = lock(&self.entries);
        let entry = entries.iter_mut().find(|entry| {
            !entry.conn.broken.load(Ordering::Relaxed) && entry.calls < self.max_calls
        })?;
        entry.calls += 1;
        Some(Lease { conn: Arc::clone(&entry.conn), entries: Arc::clone(&self.entries) })
    }

    /// A channel for a unary call (the lock-resolution RPCs, which need no probe and no lease:
    /// HTTP/2 multiplexes them with the streams): a healthy stream connection's if there is one,
    /// else the pool's unary channel, connected lazily (must be called within a tokio runtime).
    pub(crate) fn unary_channel(&self) -> Channel {
        let healthy = lock(&self.entries)
            .iter()
            .find(|entry| !entry.conn.broken.load(Ordering::Relaxed))
            .map(|entry| entry.conn.channel.clone());
        healthy.unwrap_or_else(|| {
            lock(&self.unary).get_or_insert_with(|| self.endpoint.connect_lazy()).clone()
        })
    }

    /// Stops every connection from taking new calls (their current calls run on).
    pub(crate) fn retire_all(&self) {
        for entry in lock(&self.entries).iter() {
            entry.conn.broken.store(true, Ordering::Relaxed);
        }
        lock(&self.unary).take();
    }

    /// The number of connections in the pool (the unary channel included, when there is one).
    pub(crate) fn connections(&self) -> usize {
        lock(&self.entries).len() + usize::from(lock(&self.unary).is_some())
    }
}

impl Lease {
    /// The connection's mode.
    pub(crate) fn mode(&self) -> Mode {
        self.conn.mode
    }

    /// A gRPC client on the connection.
    pub(crate) fn grpc(&self) -> Grpc<Channel> {
        Grpc::new(self.conn.channel.clone())
    }

    /// Stops the connection from taking new calls: a call on it failed.
    pub(crate) fn retire(&self) {
        self.conn.broken.store(true, Ordering::Relaxed);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut entries = lock(&self.entries);
        if let Some(at) = entries.iter().position(|entry| Arc::ptr_eq(&entry.conn, &self.conn)) {
            entries[at].calls -= 1;
            if entries[at].calls == 0 {
                // The channel closes once the last clone (this lease's) is gone.
                entries.swap_remove(at);
            }
        }
    }
}

/// Whether a status ends a probe the way a multiplexing TiKV does.
fn is_eof_like(status: &Status) -> bool {
    status.code() == Code::Cancelled
        || (status.code() == Code::Unknown && status.message().contains("EOF"))
}

/// A request for `EventFeedV2`, with the features metadata.
pub(crate) fn v2_request<S>(stream: S) -> Request<S> {
    let mut request = Request::new(stream);
    request.metadata_mut().insert(FEATURES_KEY, MetadataValue::from_static(STREAM_MULTIPLEXING));
    request
}

/// The path of the call for a mode.
pub(crate) fn path(mode: Mode) -> PathAndQuery {
    PathAndQuery::from_static(match mode {
        Mode::Multiplexed => EVENT_FEED_V2,
        Mode::PerSubscription => EVENT_FEED,
    })
}

/// Probes a fresh connection (see the module doc).
async fn probe(channel: Channel) -> Result<Mode, Status> {
    let mut grpc = Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unavailable(chain(&error)))?;
    let request = v2_request(tokio_stream::empty::<WireRequest>());
    let outcome = match grpc.streaming(request, path(Mode::Multiplexed), FrameCodec).await {
        Ok(response) => response.into_inner().message().await.map(drop),
        Err(status) => Err(status),
    };
    match outcome {
        Ok(()) => Ok(Mode::Multiplexed),
        Err(status) if status.code() == Code::Unimplemented => Ok(Mode::PerSubscription),
        Err(status) if is_eof_like(&status) => Ok(Mode::Multiplexed),
        Err(status) => Err(status),
    }
}
