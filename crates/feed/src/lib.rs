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
//!
//! The pipeline is sans-IO: it takes rows and a resolved ts, and returns events or a typed
//! [`RowError`], never panicking on what a server sends.

#![forbid(unsafe_code)]

mod event;
mod matcher;
mod region;

pub use event::{Op, RowEvent};
pub use region::{RegionRows, RowError};
