//! Jittered exponential backoff and its one source of jitter.
//!
//! The jitter only spreads clients (or regions, or streams) that failed together; it need not be
//! unpredictable, so it is a splitmix64 sequence, with no `rand` dependency. Tests fix the seed
//! ([`Jitter::new`]); production code seeds from the clock ([`Jitter::from_clock`]).

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// splitmix64's increment (the golden ratio in 64 bits).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Exponential backoff bounds: the delay before attempt `n` (1-based) is drawn uniformly from
/// `[d/2, d]` with `d = min(initial * 2^(n-1), max)`; attempt 0 has no delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay bound of the first attempt.
    pub initial: Duration,
    /// The largest delay bound.
    pub max: Duration,
}

impl Backoff {
    /// Backoff from `initial` up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The bound `d` of attempt `attempt`: `min(initial * 2^(attempt-1), max)`, zero for
    /// attempt 0.
    pub fn bound(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// The delay before attempt `attempt`, uniform in `[d/2, d]`, drawing from `jitter`.
    pub fn delay(&self, attempt: u32, jitter: &Jitter) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        self.delay_at(attempt, jitter.next_u64())
    }

    /// The delay before attempt `attempt` for the random value `r`, read as the fraction
    /// `r / 2^64` of the way from `d/2` to `d` (so `r = 0` gives `d/2`, `u64::MAX` almost `d`).
    /// Deterministic: callers that derive `r` from a salt (see [`mix`]) get repeatable delays.
    pub fn delay_at(&self, attempt: u32, r: u64) -> Duration {
        let bound = self.bound(attempt);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let spread = u128::from(nanos - half) + 1;
        // (spread * r) >> 64 < spread <= u64::MAX + 1, so the offset is at most `nanos - half`.
        let offset = ((spread * u128::from(r)) >> 64) as u64;
        Duration::from_nanos(half + offset)
    }
}

/// A source of jitter: a splitmix64 sequence, shareable between threads (`&self`).
#[derive(Debug)]
pub struct Jitter(AtomicU64);

impl Jitter {
    /// The sequence seeded with `seed` (any value): the same seed gives the same draws.
    pub const fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// A sequence seeded from the clock and a process-wide counter, so that clients started
    /// together still draw differently.
    pub fn from_clock() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::new(time ^ count.rotate_left(32))
    }

    /// The next pseudo-random value.
    pub fn next_u64(&self) -> u64 {
        mix(self.0.fetch_add(GOLDEN, Ordering::Relaxed))
    }
}

impl Clone for Jitter {
    /// A sequence continuing from this one's current state.
    fn clone(&self) -> Self {
        Self::new(self.0.load(Ordering::Relaxed))
    }
}

/// splitmix64's output function applied to `x + golden`: a cheap, well-spread hash, for jitter
/// derived from a salt (`backoff.delay_at(attempt, mix(salt ^ attempt))`). `Jitter::new(s)`
/// draws `mix(s)`, `mix(s + golden)`, ...
pub const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        // From transport's reconnect backoff.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let jitter = Jitter::new(0);
        assert_eq!(backoff.delay(0, &jitter), Duration::ZERO);
        for failures in 1..=40u32 {
            let bound = Duration::from_millis(100)
                .saturating_mul(1 << (failures - 1).min(31))
                .min(Duration::from_secs(5));
            assert_eq!(backoff.bound(failures), bound);
            let mut seen = Vec::new();
            for _ in 0..64 {
                let delay = backoff.delay(failures, &jitter);
                assert!(bound / 2 <= delay && delay <= bound, "{failures}: {delay:?} vs {bound:?}");
                seen.push(delay);
            }
            seen.sort();
            seen.dedup();
            assert!(seen.len() > 32, "jitter spreads the delays");
        }
        assert!(backoff.delay(u32::MAX, &jitter) <= backoff.max);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        // From regioncache's PD retry backoff.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for (retry, full_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (60, 1000)] {
            let full = Duration::from_millis(full_ms);
            assert_eq!(backoff.delay_at(retry, 0), full / 2, "retry {retry}");
            let top = backoff.delay_at(retry, u64::MAX);
            assert!(top <= full && top > full * 99 / 100, "retry {retry}: {top:?}");
        }
        assert_eq!(backoff.delay_at(0, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn salted_delays_double_within_jitter_and_cap_and_spread() {
        // From the feed's per-region backoff: jitter derived from a salt.
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 1..=10u32 {
            let bound = Duration::from_millis(100 * (1 << (attempt - 1))).min(backoff.max);
            for salt in 0..50u64 {
                let d = backoff.delay_at(attempt, mix(salt ^ u64::from(attempt)));
                assert!(d >= bound / 2 && d <= bound, "attempt {attempt}: {d:?} vs {bound:?}");
            }
        }
        let mut delays: Vec<Duration> =
            (0..20u64).map(|region| backoff.delay_at(3, mix(region ^ 3))).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 15, "jitter spreads retries: {delays:?}");
    }

    #[test]
    fn zero_and_huge_bounds_do_not_overflow() {
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay_at(5, u64::MAX), Duration::ZERO);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        let d = huge.delay_at(40, u64::MAX);
        assert!(d >= Duration::from_nanos(u64::MAX / 2));
    }

    #[test]
    fn jitter_is_seeded_and_never_sticks() {
        let a = Jitter::new(0);
        assert!((0..1000).map(|_| a.next_u64()).all(|x| x != 0));
        let (b, c) = (Jitter::new(9), Jitter::new(9));
        let draws: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(draws, (0..8).map(|_| c.next_u64()).collect::<Vec<_>>());
        assert!(draws.windows(2).all(|w| w[0] != w[1]), "jitter repeats: {draws:?}");
        assert_eq!(Jitter::new(5).next_u64(), mix(5));
        let d = b.clone();
        assert_eq!(b.next_u64(), d.next_u64());
        let clocked = Jitter::from_clock();
        let draws: Vec<u64> = (0..4).map(|_| clocked.next_u64()).collect();
        assert!(draws.windows(2).all(|w| w[0] != w[1]));
        assert_ne!(Jitter::from_clock().next_u64(), Jitter::from_clock().next_u64());
    }
}
