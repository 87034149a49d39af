//! kvfeed: stream row changes out of a TiKV cluster.
//!
//! A [`Client`] subscribes key spans from a start ts and delivers, per subscription, every row
//! committed in the span after the start ts (at least once) and the subscription's resolved ts
//! as it advances: once [`Event::Resolved`]`(ts)` is delivered, no row with `commit_ts <= ts`
//! follows. It survives region splits and merges, leader moves, busy and failed stores: each
//! region is re-requested from its own resolved ts, so nothing is missed.
//!
//! ```no_run
//! use kvfeed::{Client, Config, Event};
//! use kvfeed_span::table::table_span;
//!
//! # async fn watch() -> Result<(), kvfeed::Error> {
//! let client = Client::connect(Config::new(["127.0.0.1:2379"])).await?;
//! let runner = client.clone();
//! tokio::spawn(async move { runner.run().await });
//!
//! // Every row of TiDB table 100 committed from now on.
//! let start_ts = client.current_ts().await?;
//! let mut subscription = client.subscribe(table_span(100), start_ts).await?;
//! while let Some(event) = subscription.recv().await {
//!     match event? {
//!         Event::Row(row) => println!("{:?} {:?} at {}", row.op, row.key, row.commit_ts),
//!         Event::Resolved(ts) => println!("complete up to {ts}"),
//!         _ => {} // kinds of events added in later releases
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! TiCDC's shared KV client, rebuilt as a few stages that talk one way (ARCHITECTURE.md has the
//! map): a scheduler gets regions onto streams, region workers process their events and hand
//! finished regions back to it as messages, a resolver settles stale locks, and a housekeeping
//! task publishes on a timer.
//!
//! - **Range tasks** load the regions of a span from PD in batches and lock each region's part
//!   of the span in the subscription's range lock ([`kvfeed_rangelock`]), which yields the ts
//!   to request it from. A request that must wait for an older epoch of a region is parked, never
//!   waited for.
//! - **Region requests** find the region's leader, wait in the store's queue for a place in its
//!   initial-scan window ([`Config::initial_scan_window`]), and register the region on one of a
//!   few multiplexed streams to the store ([`kvfeed_transport`], which owns every connection
//!   to TiKV). A store whose version PD reports outside [`Config::store_versions`] is waited for
//!   (asked about again once a second) until it is upgraded; no store's trouble holds up
//!   another's regions. Work starts when [`Client::run`] does.
//! - **Region workers** (a region is pinned to one by a hash of its id) pair prewrites with
//!   commits ([`RegionRows`]), deliver rows, and advance the range lock with TiKV's resolved-ts
//!   batches; the subscription's resolved ts (the lock's minimum, read in `O(1)`) is published
//!   on arrival and on a timer ([`ResolvedPublisher`]).
//! - **Region errors** re-request the region after a jittered backoff that grows with the
//!   region's consecutive failures, whatever they are, and decays only after 30 s without one
//!   (busy, congested, not leader, stream failures, unknown errors, a duplicate request after
//!   deregistering it, rows that break the protocol, a scan stuck beyond
//!   [`Config::region_stuck_timeout`], a resolved ts far ahead of PD's clock), or unlock it and
//!   re-divide its range through PD (split, merge, region not found). A cluster-id mismatch, an
//!   incompatible store, or a row that cannot be interpreted on [`Config::bad_row_attempts`]
//!   attempts fails the subscription with a typed [`Error`].
//! - **Lock resolution** ([`Client::resolve_lock`], and automatically when a subscription lags
//!   PD's clock by [`Config::lock_resolve_fence`]) settles abandoned transactions so the
//!   resolved ts moves again ([`LockResolveQueue`] decides which regions and when).
//! - **Metrics** ([`Client::metrics_text`]) follow TiCDC's `kvclient` set; logs go through
//!   `tracing` with subscription and region ids.
//!
//! The sans-IO pieces ([`RegionRows`], [`ResolvedPublisher`], [`LockResolveQueue`]) are public
//! for reuse and testing.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod backoff;
mod client;
mod clock;
mod config;
mod delivered;
mod error;
mod event;
mod history;
mod housekeeping;
mod lifecycle;
mod matcher;
mod metrics;
mod prewrite_cache;
mod publish;
mod region;
mod resolve_lock;
mod resolver;
mod safepoint;
mod scheduler;
mod shared;
mod snapshot;
mod spill;
mod sub_quota;
mod subscription;
mod version;
mod worker;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

pub use client::{Client, GcHold, SubscriptionStats};
pub use config::Config;
pub use error::{ClusterPeer, Error};
pub use event::{Event, Op, RowEvent, SnapshotRow, SubscriptionId};
pub use kvfeed_base::{Backoff, ClientIdentity, TlsConfig};
pub use prewrite_cache::PrewriteCache;
pub use publish::ResolvedPublisher;
pub use region::{RegionRows, RowError};
pub use resolve_lock::{Admission, LockResolveQueue, ResolveTask};
pub use resolver::LOCK_RESOLVE_MARGIN;
pub use snapshot::{Snapshot, SnapshotCursor, SnapshotProgress};
pub use subscription::Subscription;
pub use version::{TikvVersion, VersionError};

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
