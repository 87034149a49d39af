//! PD's clock as the client last saw it: the newest TSO timestamp fetched, and when. Read by
//! the housekeeping (lag gauges, the lock-resolution trigger, slow-region reports) and by the
//! workers (a resolved ts far ahead of PD's clock is refused), so that none of them waits for PD:
//! one task refreshes it (`housekeeping::run_clock`), and through a PD outage the estimate
//! goes on with the local clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use kvfeed_base::lock;

/// Bits of the logical part of a TSO timestamp.
const LOGICAL_BITS: u32 = kvfeed_regioncache::LOGICAL_BITS;

/// How far ahead of PD's clock a store's resolved ts may be (TiKV derives resolved ts from PD's
/// timestamps, so only clock estimation slack is allowed).
pub(crate) const RESOLVED_TS_ALLOWANCE: Duration = Duration::from_secs(60);

/// The newest TSO timestamp seen, with the local instant it was fetched at.
#[derive(Debug, Default)]
pub(crate) struct PdClock {
    last: Mutex<Option<(u64, Instant)>>,
    /// The highest resolved-ts ceiling computed so far. Ceilings only grow with time (the
    /// estimate never goes back; a wall clock set back could only make this one generous), so a
    /// ts at or below it is admitted with one atomic load: the check sits on the resolved-ts
    /// path of every batch.
    known_ceiling: AtomicU64,
}

impl PdClock {
    /// Records a timestamp fetched from PD just now (an older one than known is ignored).
    pub(crate) fn observe(&self, ts: u64) {
        let mut last = lock(&self.last);
        if last.is_none_or(|(known, _)| ts > known) {
            *last = Some((ts, Instant::now()));
        }
    }

    /// PD's clock now, estimated: the last timestamp's physical part plus the time since it was
    /// fetched (logical part 0). `None` before the first timestamp.
    pub(crate) fn estimate(&self) -> Option<u64> {
        let (ts, at) = (*lock(&self.last))?;
        let elapsed = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(compose((ts >> LOGICAL_BITS).saturating_add(elapsed)))
    }

    /// Whether a store may report `ts` as a resolved ts now: at most the
    /// [`ceiling`](Self::ceiling) with [`RESOLVED_TS_ALLOWANCE`].
    pub(crate) fn admits_resolved_ts(&self, ts: u64) -> bool {
        if ts <= self.known_ceiling.load(Ordering::Relaxed) {
            return true;
        }
        let ceiling = self.ceiling(RESOLVED_TS_ALLOWANCE);
        self.known_ceiling.fetch_max(ceiling, Ordering::Relaxed);
        ts <= ceiling
    }

    /// The highest resolved ts a store may report now: PD's clock (or the local wall clock,
    /// whichever is ahead: TSO physical time is Unix time in milliseconds) plus `allowance`.
    /// TiKV computes resolved ts from timestamps PD handed out, so anything above is a bug or
    /// a hostile store.
    pub(crate) fn ceiling(&self, allowance: Duration) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let wall = compose(u64::try_from(wall.as_millis()).unwrap_or(u64::MAX));
        let now = self.estimate().unwrap_or(0).max(wall);
        let allowance = u64::try_from(allowance.as_millis()).unwrap_or(u64::MAX);
        now.saturating_add(compose(allowance))
    }
}

/// A timestamp of physical milliseconds `ms` and logical part 0 (saturating).
fn compose(ms: u64) -> u64 {
    ms.saturating_mul(1 << LOGICAL_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_moves_on_from_the_newest_timestamp() {
        let clock = PdClock::default();
        assert_eq!(clock.estimate(), None);
        let ts = compose(1_000_000) + 5;
        clock.observe(ts);
        clock.observe(ts - 10); // older: ignored
        let estimate = clock.estimate().unwrap();
        assert!(estimate >= compose(1_000_000) && estimate < ts + compose(60_000), "{estimate}");
    }

    #[test]
    fn the_ceiling_is_ahead_of_both_clocks_by_the_allowance() {
        let clock = PdClock::default();
        let wall = compose(
            u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis())
                .unwrap(),
        );
        let allowance = Duration::from_secs(60);
        assert!(clock.ceiling(allowance) >= wall + compose(60_000));
        // PD far ahead of the local clock: its clock counts.
        let ahead = wall + compose(3_600_000);
        clock.observe(ahead);
        assert!(clock.ceiling(allowance) >= ahead + compose(60_000));
        assert!(clock.ceiling(allowance) < u64::MAX);
        assert_eq!(clock.ceiling(Duration::MAX), u64::MAX);
    }

    #[test]
    fn resolved_ts_within_the_allowance_are_admitted_and_far_ones_not() {
        let clock = PdClock::default();
        let now = clock.ceiling(Duration::ZERO);
        assert!(clock.admits_resolved_ts(now));
        assert!(clock.admits_resolved_ts(now + compose(30_000)));
        assert!(!clock.admits_resolved_ts(now + compose(3_600_000)));
        assert!(!clock.admits_resolved_ts(u64::MAX));
        // The fast path: below a ceiling already computed.
        assert!(clock.admits_resolved_ts(now + 1));
    }
}
