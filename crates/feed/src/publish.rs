//! When a subscription's resolved ts is published.
//!
//! The subscription's resolved ts (the range lock's minimum) can move on every TiKV batch, for
//! thousands of regions a second; subscribers want it at a steady pace. [`ResolvedPublisher`]
//! publishes at most once per interval, as soon as the interval allows (on arrival), and, unlike
//! the original's leading-edge throttle (reference §11 item 20), never sits on the last advance
//! of a burst: [`ResolvedPublisher::deadline`] tells the caller when to look again.
//!
//! Time is the caller's: `now` is any monotonic clock reading, as a [`Duration`] since an origin.

use std::time::Duration;

/// Paces the publication of one subscription's resolved ts.
///
/// Invariant: published values strictly increase and are all above the start ts.
#[derive(Clone, Debug)]
pub struct ResolvedPublisher {
    interval: Duration,
    /// The highest ts published so far, or the start ts.
    published: u64,
    /// When the last value was published.
    published_at: Option<Duration>,
    /// Whether an advance is waiting for the interval to pass.
    pending: bool,
}

impl ResolvedPublisher {
    /// A publisher for a subscription started at `start_ts`, publishing at most once per
    /// `interval`.
    pub fn new(start_ts: u64, interval: Duration) -> Self {
        Self { interval, published: start_ts, published_at: None, pending: false }
    }

    /// The last published ts (the start ts before the first publication).
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Called when the subscription's resolved ts may have moved (a batch arrived) and when a
    /// [`deadline`](Self::deadline) passes: returns the ts to publish now, if any.
    #[must_use = "a returned ts must be delivered to the subscriber"]
    pub fn poll(&mut self, now: Duration, resolved_ts: u64) -> Option<u64> {
        if resolved_ts <= self.published {
            self.pending = false;
            return None;
        }
        let due = self.published_at.is_none_or(|at| now >= at + self.interval);
        if !due {
            self.pending = true;
            return None;
        }
        self.published = resolved_ts;
        self.published_at = Some(now);
        self.pending = false;
        Some(resolved_ts)
    }

    /// When to poll again for an advance held back by the interval, if one is.
    pub fn deadline(&self) -> Option<Duration> {
        let at = self.published_at?;
        self.pending.then_some(at + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ResolvedPublisher;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn publishes_only_above_the_start_ts_and_never_backwards() {
        let mut p = ResolvedPublisher::new(100, ms(300));
        assert_eq!(p.poll(ms(0), 100), None, "the start ts itself is not news");
        assert_eq!(p.poll(ms(0), 101), Some(101));
        assert_eq!(p.poll(ms(1000), 99), None, "a lower minimum (a new region) is not published");
        assert_eq!(p.poll(ms(1000), 101), None);
        assert_eq!(p.poll(ms(1000), 150), Some(150));
        assert_eq!(p.published(), 150);
    }

    #[test]
    fn the_last_advance_of_a_burst_is_published_at_the_deadline() {
        // The original published on the leading edge only: 130 below would wait for the next
        // TiKV batch, up to a second later.
        let mut p = ResolvedPublisher::new(0, ms(300));
        assert_eq!(p.poll(ms(0), 110), Some(110));
        assert_eq!(p.poll(ms(100), 120), None);
        assert_eq!(p.poll(ms(200), 130), None);
        assert_eq!(p.deadline(), Some(ms(300)));
        assert_eq!(p.poll(ms(300), 130), Some(130));
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn nothing_pending_means_no_deadline() {
        let mut p = ResolvedPublisher::new(0, ms(300));
        assert_eq!(p.deadline(), None);
        assert_eq!(p.poll(ms(0), 5), Some(5));
        assert_eq!(p.poll(ms(10), 5), None);
        assert_eq!(p.deadline(), None);
        assert_eq!(p.poll(ms(20), 6), None);
        assert_eq!(p.deadline(), Some(ms(300)));
        // The minimum fell back (a region re-requested from a lower checkpoint): nothing to do.
        assert_eq!(p.poll(ms(30), 5), None);
        assert_eq!(p.deadline(), None);
    }
}
