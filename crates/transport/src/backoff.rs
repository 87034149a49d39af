//! Jittered exponential backoff for reconnecting a failed stream, with a tiny xorshift generator
//! for the jitter (no `rand` dependency: the jitter only spreads reconnects, it need not be
//! unpredictable).

use core::time::Duration;

/// Exponential backoff: the delay after the `n`-th consecutive failure is drawn uniformly from
/// `[d / 2, d]` with `d = min(initial * 2^(n-1), max)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay bound after the first failure.
    pub initial: Duration,
    /// The largest delay bound.
    pub max: Duration,
}

/// A xorshift64* generator. Invariant: the state is never 0.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// A generator seeded from `seed` (any value; 0 is remapped).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Backoff {
    /// The delay before retrying after `failures` consecutive failures (0 failures: no delay).
    pub(crate) fn delay(&self, failures: u32, jitter: &mut Jitter) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(32);
        let bound = self.initial.saturating_mul(1 << doublings.min(31)).min(self.max);
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let half = bound_nanos / 2;
        let spread = bound_nanos - half;
        let offset = if spread == 0 { 0 } else { jitter.next_u64() % (spread + 1) };
        Duration::from_nanos(half + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
        let mut jitter = Jitter::new(0);
        assert_eq!(backoff.delay(0, &mut jitter), Duration::ZERO);
        for failures in 1..=40u32 {
            let bound = Duration::from_millis(100)
                .saturating_mul(1 << (failures - 1).min(31))
                .min(Duration::from_secs(5));
            let mut seen = Vec::new();
            for _ in 0..64 {
                let delay = backoff.delay(failures, &mut jitter);
                assert!(bound / 2 <= delay && delay <= bound, "{failures}: {delay:?} vs {bound:?}");
                seen.push(delay);
            }
            seen.sort();
            seen.dedup();
            assert!(seen.len() > 32, "jitter spreads the delays");
        }
    }

    #[test]
    fn jitter_never_sticks_at_zero() {
        let mut jitter = Jitter::new(0);
        assert!((0..1000).map(|_| jitter.next_u64()).all(|x| x != 0));
    }
}
