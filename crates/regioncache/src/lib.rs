//! A PD client and a region/store cache for TiKV change-data clients.
//!
//! The crate has two layers:
//!
//! - a sans-I/O core, [`RegionCache`]: regions by start key and by id (with epoch, peers and
//!   leader) and stores by id, with the rule that no two cached regions overlap (a newer version
//!   evicts the older overlapping entries; an older one is refused, and so is a report of the
//!   same region whose epoch is lower on either field: [`RegionEpoch::is_stale_against`]). It decides where a region's
//!   next request goes and how `NotLeader`, failed sends and `EpochNotMatch` change that. It
//!   never performs I/O, reads a clock or waits.
//! - the I/O layer over tonic: [`PdClient`] (leader discovery through `GetMembers`, retries with
//!   jittered backoff, per-call timeouts, the cluster-id check on every response, a batching TSO
//!   stream, region and store look-ups, optional TLS) and [`PdRegionSource`], which fills a
//!   [`RegionCache`] from PD and de-duplicates identical loads in flight.
//!
//! The feed uses [`PdRegionSource`]. Retries use `kvfeed-base`'s [`Backoff`], TLS its
//! [`TlsConfig`] (file paths, read at connect time). Protobuf types stay inside: the API speaks
//! [`Region`], [`Peer`], [`Store`] and [`kvfeed_span::Span`] (region boundaries are
//! memcomparable-encoded keys; an empty start is minus infinity and an empty end plus infinity).
//!
//! ```
//! use kvfeed_regioncache::{Insert, Peer, Region, RegionCache, RegionEpoch};
//! use kvfeed_span::Span;
//!
//! let region = |id, start: &[u8], end: &[u8], version| {
//!     let span = Span::from_bytes(start, end).unwrap();
//!     let peers = vec![Peer::voter(id * 10 + 1, 1), Peer::voter(id * 10 + 2, 2)];
//!     Region::new(id, span, RegionEpoch::new(version, 1), peers, None).unwrap()
//! };
//! let mut cache = RegionCache::new();
//! cache.insert(region(1, b"", b"", 1));
//! // Region 1 split at "m": the newer halves evict it.
//! assert_eq!(cache.insert(region(2, b"m", b"", 2)), Insert::Inserted { evicted: 1 });
//! assert_eq!(cache.region_at(b"x").map(|r| r.id()), Some(2));
//! assert_eq!(cache.region_at(b"a"), None); // a hole until PD reports the left half
//! // A late report of the old region is refused.
//! assert_eq!(cache.insert(region(1, b"", b"", 1)), Insert::Stale);
//! cache.check_invariants().unwrap();
//! ```
//!
//! # Features
//!
//! - `tls` (default): TLS to PD ([`TlsConfig`]), through rustls with the ring provider.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod cache;
mod config;
mod conn;
mod convert;
mod error;
mod meta;
mod pd;
mod source;
mod tso;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use cache::{Insert, InvariantViolation, LeaderUpdate, RegionCache, SendFail};
pub use config::PdConfig;
pub use error::{Error, PdErrorKind, RegionListError};
pub use kvfeed_base::{Backoff, ClientIdentity, TlsConfig, TlsError};
pub use meta::{
    InvalidRegion, Peer, PeerId, PeerRole, Region, RegionEpoch, RegionId, RegionVerId, Store,
    StoreId, StoreState,
};
pub use pd::{PdClient, ServiceSafePoint};
pub use source::{DEFAULT_SCAN_LIMIT, PdRegionSource, RegionBatch, RpcContext};
pub use tso::LOGICAL_BITS;
