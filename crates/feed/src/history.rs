//! Each region's failure history: how many times in a row its registration failed, and how
//! many of those failures were rows that could not be interpreted. Sans-IO (time is passed in).
//!
//! The history is what makes backoff grow (reference §11: the original, and kvfeed before this,
//! restarted at the base delay whenever a region was reloaded or finished its scan, so a store
//! answering every scan with `RegionNotFound` got a re-scan storm). It survives everything that
//! ends a registration (a retry, a reload through PD, a completed scan) and decays only once the
//! region has gone [`HEALTHY_AFTER`] without a failure; entries older than that are forgotten,
//! so the map holds only regions that failed recently.

use std::time::Duration;

use hashbrown::HashMap;

/// A region that went this long without a failure starts its backoff from the beginning again.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// What is known of one region's recent failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    /// Failed registrations since the region was last healthy (at least 1).
    failures: u32,
    /// Of those, failures on a row that could not be interpreted.
    bad_rows: u32,
    /// When the last one happened.
    last: Duration,
}

/// The failure histories of the regions of every subscription, keyed by `(subscription,
/// region)`.
///
/// Invariant: every record's `last` is at most [`HEALTHY_AFTER`] old as of the last
/// [`FailureHistory::forget_healthy`] (older ones are removed there).
#[derive(Debug, Default)]
pub(crate) struct FailureHistory {
    records: HashMap<(u64, u64), Record>,
}

/// A failure just recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failures {
    /// Consecutive failures, this one included: the backoff attempt.
    pub(crate) attempt: u32,
    /// Consecutive failures on bad rows, this one included if it was one.
    pub(crate) bad_rows: u32,
}

impl FailureHistory {
    /// Records a failure of the region at `now`; `bad_row` if it was a row that could not be
    /// interpreted.
    pub(crate) fn fail(&mut self, now: Duration, sub: u64, region: u64, bad_row: bool) -> Failures {
        let record = self.records.entry((sub, region)).or_insert(Record {
            failures: 0,
            bad_rows: 0,
            last: now,
        });
        if now.saturating_sub(record.last) >= HEALTHY_AFTER {
            *record = Record { failures: 0, bad_rows: 0, last: now };
        }
        record.failures = record.failures.saturating_add(1);
        record.bad_rows = record.bad_rows.saturating_add(u32::from(bad_row));
        record.last = now;
        Failures { attempt: record.failures, bad_rows: record.bad_rows }
    }

    /// Forgets the regions that have been healthy for [`HEALTHY_AFTER`], and every region of the
    /// subscriptions `live` does not keep.
    pub(crate) fn forget_healthy(&mut self, now: Duration, live: impl Fn(u64) -> bool) {
        self.records.retain(|&(sub, _), record| {
            now.saturating_sub(record.last) < HEALTHY_AFTER && live(sub)
        });
    }

    /// How many regions have a recent failure.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_accumulate_until_the_region_is_healthy_for_a_while() {
        let mut history = FailureHistory::default();
        for attempt in 1..=5 {
            let now = S * 5 * attempt;
            assert_eq!(history.fail(now, 1, 7, false).attempt, attempt);
        }
        // Another region and another subscription have their own count.
        assert_eq!(history.fail(S * 26, 1, 8, false).attempt, 1);
        assert_eq!(history.fail(S * 26, 2, 7, false).attempt, 1);
        // Healthy for HEALTHY_AFTER: the count starts again.
        let later = S * 25 + HEALTHY_AFTER;
        assert_eq!(history.fail(later, 1, 7, false), Failures { attempt: 1, bad_rows: 0 });
    }

    #[test]
    fn bad_rows_are_counted_among_the_failures() {
        let mut history = FailureHistory::default();
        assert_eq!(history.fail(S, 1, 7, true), Failures { attempt: 1, bad_rows: 1 });
        assert_eq!(history.fail(S * 2, 1, 7, false), Failures { attempt: 2, bad_rows: 1 });
        assert_eq!(history.fail(S * 3, 1, 7, true), Failures { attempt: 3, bad_rows: 2 });
        assert_eq!(history.fail(S * 3 + HEALTHY_AFTER, 1, 7, true).bad_rows, 1);
    }

    #[test]
    fn healthy_regions_and_stopped_subscriptions_are_forgotten() {
        let mut history = FailureHistory::default();
        history.fail(S, 1, 7, false);
        history.fail(S * 20, 1, 8, false);
        history.fail(S * 20, 2, 9, false);
        history.forget_healthy(S + HEALTHY_AFTER, |sub| sub == 1);
        assert_eq!(history.len(), 1, "only region 8 of the live subscription failed recently");
        assert_eq!(history.fail(S * 21, 1, 8, false).attempt, 2);
    }
}
