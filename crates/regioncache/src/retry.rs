//! Retry pacing: exponential backoff with jitter.
//!
//! Jitter comes from a splitmix64 sequence seeded from the clock and a global counter: enough to
//! spread clients that failed together, with no `rand` dependency.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// How a failing PD call is retried: up to `retries` more attempts, the `n`-th after a delay drawn
/// uniformly from `[d/2, d]` where `d = min(max, base * 2^(n-1))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// The cap of the delay.
    pub max: Duration,
    /// Retries after the first attempt; 0 means a single attempt.
    pub retries: u32,
}

impl Backoff {
    /// The delay before retry number `retry` (1-based), for a uniform random `r` in `[0, 1)`
    /// given as a `u64` fraction of `2^64`.
    pub fn delay(&self, retry: u32, r: u64) -> Duration {
        let doubling = retry.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1 << doubling).min(self.max);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = ((u128::from(nanos) * u128::from(r)) >> 64) as u64;
        half + Duration::from_nanos(jitter)
    }
}

/// A thread-safe source of jitter.
#[derive(Debug)]
pub(crate) struct Jitter(AtomicU64);

impl Jitter {
    /// A sequence seeded from the clock and a process-wide counter.
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(AtomicU64::new(time ^ count.rotate_left(32)))
    }

    /// The next pseudo-random `u64` (splitmix64).
    pub(crate) fn next(&self) -> u64 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
