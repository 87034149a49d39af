//! The library part of the `kvfeed` command: [`Watcher`], the subscriber `kvfeed demo` reads
//! raw spans with, logging what it receives for the simulator's verifier
//! ([`kvfeed_sim::verify`]) and keeping the counters of the progress display, and
//! [`DecodedWatcher`], its counterpart for TiDB tables by name (checked by
//! [`kvfeed_sim::verify_tidb`]). The seeded chaos runs of the repository (`kvfeed-chaos`) read
//! their subscriptions with them too.
//!
//! The command itself is the `kvfeed` binary of this package (`src/main.rs`).

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod decoded;
mod watcher;

pub use decoded::DecodedWatcher;
pub use watcher::{Watcher, tso_age_ms};
