//! Jittered exponential backoff for re-requesting regions and reloading ranges (reference §11
//! item 9: the original retried busy stores in a hot loop).

use std::time::Duration;

/// The delay before the `attempt`-th retry (1-based; 0 means no delay): uniform in
/// `[d/2, d]` with `d = min(base * 2^(attempt-1), max)`. `salt` spreads retries of different
/// regions (the region id, mixed with anything that varies).
pub(crate) fn delay(bounds: (Duration, Duration), attempt: u32, salt: u64) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let (base, max) = bounds;
    let doublings = (attempt - 1).min(30);
    let bound = base.saturating_mul(1 << doublings).min(max);
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    let half = nanos / 2;
    let spread = nanos - half;
    let jitter = if spread == 0 { 0 } else { mix(salt ^ u64::from(attempt)) % (spread + 1) };
    Duration::from_nanos(half + jitter)
}

/// splitmix64's finaliser: a cheap, well-spread hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_cap() {
        let bounds = (Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(delay(bounds, 0, 7), Duration::ZERO);
        for attempt in 1..=10u32 {
            let bound = Duration::from_millis(100 * (1 << (attempt - 1))).min(bounds.1);
            for salt in 0..50 {
                let d = delay(bounds, attempt, salt);
                assert!(d >= bound / 2 && d <= bound, "attempt {attempt}: {d:?} vs {bound:?}");
            }
        }
        assert!(delay(bounds, u32::MAX, 1) <= bounds.1);
    }

    #[test]
    fn different_regions_spread_out() {
        let bounds = (Duration::from_millis(100), Duration::from_secs(2));
        let mut delays: Vec<Duration> = (0..20).map(|region| delay(bounds, 3, region)).collect();
        delays.sort();
        delays.dedup();
        assert!(delays.len() > 15, "jitter spreads retries: {delays:?}");
    }
}
