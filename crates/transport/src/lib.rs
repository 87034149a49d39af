//! Pooled HTTP/2 connections and multiplexed CDC streams to TiKV stores, and the lock-resolution
//! and snapshot-read RPCs on the same connections.
//!
//! [`Transport`] is the part of kvfeed that owns every TiKV connection. It talks gRPC to TiKV's
//! `cdcpb.ChangeData` service and, for lock resolution, to `tikvpb.Tikv`
//! ([`Transport::scan_lock`], [`Transport::check_txn_status`],
//! [`Transport::check_secondary_locks`], [`Transport::resolve_lock`]) and for snapshot reads
//! ([`Transport::scan`], [`Transport::get`], [`Transport::batch_get`]): domain types in and out,
//! failures as [`KvError`]. The
//! feed gives it domain requests ("register this region of this subscription on this store",
//! "deregister that") and reads domain events from one bounded channel ([`Events`]):
//!
//! - rows, region errors and resolved-ts batches, demultiplexed by (request id, region id)
//!   ([`StreamEvent::Region`], [`StreamEvent::Resolved`]);
//! - [`StreamEvent::RegionFailed`], exactly once per region, when the stream carrying it fails;
//! - [`StreamEvent::Deregistered`], after deregistering one region: every event of its old
//!   registrations came before it, so a registration made afterwards cannot be confused with them.
//!
//! Underneath: stores are keyed by id (their address is checked on every registration); each has
//! a pool of HTTP/2 connections (64 KiB stream windows, 8 MiB connection windows, 256 MiB decode
//! limit, keepalive, optional TLS) and a fixed number of streams chosen round robin. A stream is
//! an `EventFeedV2` call with `features: stream-multiplexing`, or, on stores that answer
//! `UNIMPLEMENTED`, one `EventFeed` call per subscription; the choice is probed per connection,
//! so again after every reconnect. Every request carries the header
//! `{cluster_id, ticdc_version: "8.1.0"}`; only Register and Deregister can be sent. A failed
//! stream is torn down in both directions and reopened by the next registration after a jittered
//! exponential backoff; a stream without regions for 60 s closes. Unary lock calls share a
//! store's stream connection (or its one unary channel), each with a `kvrpcpb::Context` naming
//! region, epoch and peer ([`RegionTarget`], from regioncache's `RpcContext`).
//!
//! The vocabulary is shared: [`RegionEpoch`], [`Peer`] and [`Region`] are regioncache's (the
//! layer below: PD and region metadata), [`Backoff`] and [`TlsConfig`] are `kvfeed-base`'s;
//! protobuf types stay inside ([`demux::decode_frame`] fails with [`FrameError`]).
//!
//! ```no_run
//! use kvfeed_span::{EncodedKey, Span};
//! use kvfeed_transport::{
//!     RegionEpoch, RegisterRequest, StoreTarget, StreamEvent, Transport, TransportConfig,
//! };
//!
//! # async fn demo() -> Result<(), kvfeed_transport::TransportError> {
//! let (transport, mut events) = Transport::new(TransportConfig::default(), 6_800_000_000_001)?;
//! let store = StoreTarget { store_id: 1, address: "127.0.0.1:20160".to_owned() };
//! let span = Span::new(EncodedKey::encode(b"a"), EncodedKey::encode(b"z")).expect("a < z");
//! transport
//!     .register(&store, RegisterRequest {
//!         request_id: 1,
//!         region_id: 2,
//!         epoch: RegionEpoch { conf_ver: 1, version: 1 },
//!         span,
//!         checkpoint_ts: 400,
//!     })
//!     .await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         StreamEvent::Region { region_id, event, .. } => println!("{region_id}: {event:?}"),
//!         StreamEvent::Resolved { regions, ts, .. } => println!("{} regions at {ts}", regions.len()),
//!         StreamEvent::RegionFailed { region_id, cause, .. } => println!("{region_id}: {cause}"),
//!         StreamEvent::Deregistered { .. } => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The crate has no features. TLS (rustls with the ring provider) is always compiled and used
//! when [`TransportConfig::tls`] is set.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

extern crate alloc;

mod budget;
mod call;
mod codec;
mod config;
pub mod demux;
mod error;
mod event;
mod kv;
mod pool;
mod read;
mod request;
mod session;
mod transport;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

pub use budget::EventCharge;
pub use config::{Keepalive, TransportConfig};
pub use error::{FrameError, StreamError, TransportError};
pub use event::{RegionError, RegionEvent, Row, RowKind, RowOp, StreamEvent};
pub use kv::{
    CheckTxnStatus, KeyError, KvError, LockInfo, LockKind, RegionTarget, ResolveLock, ScanLock,
    SecondaryLocks, TxnAction, TxnStatus,
};
/// The shared vocabulary: TLS settings and backoff from `kvfeed-base`.
pub use kvfeed_base::{Backoff, ClientIdentity, TlsConfig, TlsError};
/// Region metadata from the layer below, `kvfeed-regioncache`.
pub use kvfeed_regioncache::{Peer, PeerRole, Region, RegionEpoch};
pub use pool::Mode;
pub use read::{Read, Scan};
pub use request::{RegisterRequest, StoreTarget, TICDC_VERSION};
pub use transport::{Events, StoreStats, Transport};

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
