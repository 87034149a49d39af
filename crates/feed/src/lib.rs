//! kvfeed: stream row changes out of a TiKV cluster.
//!
//! This crate will hold the client users depend on: subscribe a span from a start ts, get rows and
//! resolved timestamps, survive the cluster's splits, merges and failures. It is being built from
//! the bottom up; what is here today is the per-region row pipeline:
//!
//! - [`RegionRows`]: everything a region worker does with the rows TiKV sends for one region
//!   registration: drops rows outside the region's span, pairs prewrites with commits (caching
//!   commits and rollbacks until the incremental scan is done), skips commits at or below the
//!   subscription's start ts, refuses rows that would break a published resolved ts, and
//!   forgets prewrites whose transactions the region's resolved ts has passed.
//! - [`RowEvent`]: a delivered row in domain terms (raw key, value, old value, start and commit
//!   ts), never a protobuf struct.
//! - [`ResolvedPublisher`]: when a subscription's resolved ts is published (at most once per
//!   interval, and never holding back the last advance of a burst).
//! - [`LockResolveQueue`]: which regions get their stale locks resolved and when (bounded,
//!   de-duplicated, with a per-region cooldown that survives housekeeping).
//!
//! These pieces are sans-IO: they take rows, timestamps and the caller's clock readings and
//! return events, decisions or typed errors ([`RowError`]), never panicking on what a server
//! sends.

#![forbid(unsafe_code)]

mod event;
mod matcher;
mod publish;
mod region;
mod resolve_lock;

pub use event::{Op, RowEvent};
pub use publish::ResolvedPublisher;
pub use region::{RegionRows, RowError};
pub use resolve_lock::{Admission, LockResolveQueue, ResolveTask};
