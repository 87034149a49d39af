//! The shared vocabulary of the kvfeed crates: one TLS configuration, one backoff with one jitter
//! source, and poison-tolerant locking.
//!
//! - [`TlsConfig`] (with [`ClientIdentity`]): PEM files for PD and TiKV connections alike;
//!   [`TlsConfig::check`] reads them, and `tonic_tls` (feature `tls`, on by default) turns them
//!   into tonic's client TLS settings, both failing with a [`TlsError`] that names the file.
//! - [`Backoff`]: jittered exponential backoff, the delay before attempt `n` uniform in
//!   `[d/2, d]` with `d = min(initial * 2^(n-1), max)`; [`Jitter`] is its seeded source of
//!   randomness (splitmix64), [`mix`] the stateless finaliser for jitter derived from a salt.
//! - [`lock`], [`get_mut`], [`read`], [`write()`]: take a `Mutex`/`RwLock`, using a poisoned one as
//!   is (kvfeed never leaves shared state half-updated across a panic).
//!
//! ```
//! use core::time::Duration;
//! use kvfeed_base::{Backoff, Jitter};
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
//! let jitter = Jitter::new(42);
//! for attempt in 1..=8 {
//!     let delay = backoff.delay(attempt, &jitter);
//!     assert!(delay >= backoff.bound(attempt) / 2 && delay <= backoff.bound(attempt));
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod backoff;
mod sync;
mod tls;

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use backoff::{Backoff, Jitter, mix};
pub use sync::{get_mut, lock, read, write};
pub use tls::{ClientIdentity, TlsConfig, TlsError};
#[cfg(feature = "tls")]
pub use tls::{tls_handshake_failure, tonic_tls};
