//! The library part of the `kvfeed` command: [`Watcher`], the subscriber `kvfeed demo` reads
//! every table with, logging what it receives for the simulator's verifier
//! ([`kvfeed_sim::verify`]) and keeping the counters of the progress display. The seeded chaos
//! runs of the repository (`kvfeed-chaos`) read their subscriptions with it too.
//!
//! The command itself is the `kvfeed` binary of this package (`src/main.rs`).

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod watcher;

pub use watcher::Watcher;
