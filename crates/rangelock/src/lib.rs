//! A per-subscription range lock with `O(1)` resolved-ts reads, for TiKV change-data clients.
//!
//! A change-data client subscribes a key span and requests it region by region. [`RangeLock`]
//! keeps, for one subscription:
//!
//! - which region owns which part of the span, so that two requests never cover the same key
//!   (a newer region epoch waits for the older one to leave; an older one is told it is stale);
//! - the resolved ts of every part: each locked region's (raised as TiKV reports progress) and
//!   each unlocked part's (the ts it had when its region left, or the start ts);
//! - the subscription's resolved ts, the minimum of all of them, read in `O(1)` and updated in
//!   `O(log n)` worst case (usually `O(1)`) per region, where the original scanned every range.
//!
//! It is sans-IO and `#![no_std]` + `alloc`: no clock, no tasks, no channels, no locks. Waiting is
//! a [`Ticket`] the caller keeps; unlocking hands back the tickets that may now proceed.
//!
//! # Sharing it between tasks
//!
//! Every method takes `&self` or `&mut self`: the caller owns the concurrency. A client wraps each
//! subscription's lock in a mutex and batches what it can under one acquisition: region workers
//! apply one TiKV resolved-ts message, thousands of regions, with a single [`advance_batch`]
//! call, and range tasks lock or unlock one region per acquisition. Nothing here blocks, so a
//! critical section is a few microseconds at most; a waiting lock request is parked (its
//! [`Ticket`] stored with the request), never waited for while holding the mutex.
//!
//! ```
//! use std::sync::Mutex;
//! use kvfeed_rangelock::{LockOutcome, RangeLock};
//! use kvfeed_span::Span;
//!
//! let span = Span::from_bytes(b"a", b"z").unwrap();
//! let lock = Mutex::new(RangeLock::new(span, 100));
//!
//! // A range task locks the part of the span one region covers...
//! let region = Span::from_bytes(b"a", b"m").unwrap();
//! let outcome = lock.lock().unwrap().lock(&region, 1, 5).unwrap();
//! assert_eq!(outcome, LockOutcome::Locked { checkpoint_ts: 100 });
//!
//! // ...a region worker records its progress...
//! let mut guard = lock.lock().unwrap();
//! guard.mark_initialized(1);
//! guard.advance_batch([1], 120);
//! // ...and the subscription's resolved ts is the minimum over the whole span, holes included.
//! assert_eq!(guard.resolved_ts(), 100);
//! let freed = guard.unlock(&region, 1, 5, None).unwrap();
//! assert_eq!(freed.resolved_ts, 120);
//! ```
//!
//! [`advance_batch`]: RangeLock::advance_batch

#![no_std]
// Denied everywhere but in `prefetch`, the one module that needs it (a CPU hint, see there).
#![deny(unsafe_code)]
// Items not reachable from the crate root say so (`pub(crate)`).
#![warn(unreachable_pub)]
// no_std honesty: what core or alloc provides is imported from there.
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;
// Tests, and the derives of the fuzzing module, need std.
#[cfg(any(test, fuzzing))]
extern crate std;

mod lock;
mod min_tree;
mod pieces;
mod prefetch;
mod region_index;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use lock::{
    Advance, Lagging, LockError, LockOutcome, LockedRange, Memory, RangeLock, RegionHandle,
    RegionTs, Stats, Stopped, Ticket, UnlockError, Unlocked,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
