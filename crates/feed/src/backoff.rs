//! Jittered exponential backoff for re-requesting regions and reloading ranges (reference §11
//! item 9: the original retried busy stores in a hot loop).

use std::time::Duration;

use kvfeed_base::{Backoff, mix};

/// The delay of `backoff` before the `attempt`-th retry (1-based; 0 means no delay): uniform in
/// `[d/2, d]` with `d = min(initial * 2^(attempt-1), max)` ([`Backoff::delay_at`]), the point
/// in that range drawn from `salt`, which spreads retries of different regions (the region id,
/// mixed with anything that varies).
pub(crate) fn delay(backoff: &Backoff, attempt: u32, salt: u64) -> Duration {
    backoff.delay_at(attempt, mix(salt ^ u64::from(attempt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_cap() {
        let bounds = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(delay(&bounds, 0, 7), Duration::ZERO);
        for attempt in 1..=10u32 {
            let bound = Duration::from_millis(100 * (1 << (attempt - 1))).min(bounds.max);
            for salt in 0..50 {
                let d = delay(&bounds, attempt, salt);
                assert!(d >= bound / 2 && d <= bound, "attempt {attempt}: {d:?} vs {bound:?}");
            }
        }
        assert!(delay(&bounds, u32::MAX, 1) <= bounds.max);
    }

    #[test]
    fn different_regions_spread_out() {
        let bounds = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut delays: Vec<Duration> = (0..20).map(|region| delay(&bounds, 3, region)).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 15, "jitter spreads retries: {delays:?}");
    }
}
