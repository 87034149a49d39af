//! [`Watcher`]: a subscriber that reads one subscription to its end, logging every event for
//! the simulator's verifier and keeping the counters a progress display wants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kvfeed::{Event, Subscription, SubscriptionId};
use kvfeed_base::lock;
use kvfeed_sim::{
    CommittedRow, FeedEvent, Report, SnapshotReport, physical_of, verify, verify_snapshot,
    verify_up_to,
};
use kvfeed_span::Span;
use tokio::task::JoinHandle;

/// How far a TSO timestamp is behind the wall clock, in ms (0 for one ahead of it): TSO
/// physical time is Unix time in milliseconds, in PD's clock as in the simulator's.
pub fn tso_age_ms(ts: u64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let now = u64::try_from(now).unwrap_or(u64::MAX);
    now.saturating_sub(u64::try_from(physical_of(ts)).unwrap_or(0))
}

/// One subscription's reader and log.
#[derive(Debug)]
pub struct Watcher {
    /// A name for reports.
    pub name: String,
    /// The subscription.
    pub id: SubscriptionId,
    /// Its span.
    pub span: Span,
    /// Its start ts.
    pub start_ts: u64,
    rows: AtomicU64,
    resolved: AtomicU64,
    log: Mutex<Vec<FeedEvent>>,
    snapshot: Mutex<SnapshotLog>,
    lags: Mutex<Vec<u64>>,
    failure: Mutex<Option<String>>,
}

/// The snapshot a subscription started with, as received.
#[derive(Debug, Default)]
struct SnapshotLog {
    /// Its rows (raw key, value).
    rows: Vec<(Bytes, Bytes)>,
    /// The ts of its `SnapshotDone`, once received.
    done: Option<u64>,
}

impl Watcher {
    /// Starts reading `subscription` (of `span` from `start_ts`) in a task that ends with the
    /// stream.
    pub fn spawn(
        name: impl Into<String>,
        subscription: Subscription,
        span: Span,
        start_ts: u64,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let watcher = Arc::new(Self {
            name: name.into(),
            id: subscription.id(),
            span,
            start_ts,
            rows: AtomicU64::new(0),
            resolved: AtomicU64::new(start_ts),
            log: Mutex::default(),
            snapshot: Mutex::default(),
            lags: Mutex::default(),
            failure: Mutex::default(),
        });
        let task = tokio::spawn(Arc::clone(&watcher).read(subscription));
        (watcher, task)
    }

    async fn read(self: Arc<Self>, mut subscription: Subscription) {
        while let Some(event) = subscription.recv().await {
            match event {
                Ok(Event::Row(row)) => {
                    self.rows.fetch_add(1, Ordering::Relaxed);
                    lock(&self.log).push(FeedEvent::Row(kvfeed_sim::RowEvent {
                        key: row.key,
                        op: match row.op {
                            kvfeed::Op::Put => kvfeed_sim::Op::Put,
                            kvfeed::Op::Delete => kvfeed_sim::Op::Delete,
                        },
                        value: row.value,
                        old_value: row.old_value,
                        start_ts: row.start_ts,
                        commit_ts: row.commit_ts,
                    }));
                }
                Ok(Event::Resolved(ts)) => {
                    self.resolved.store(ts, Ordering::Release);
                    lock(&self.log).push(FeedEvent::Resolved(ts));
                }
                Ok(Event::Snapshot(row)) => {
                    let mut snapshot = lock(&self.snapshot);
                    if snapshot.done.is_some() {
                        *lock(&self.failure) = Some("a snapshot row after SnapshotDone".to_owned());
                    }
                    snapshot.rows.push((row.key, row.value));
                }
                Ok(Event::SnapshotDone(ts)) => lock(&self.snapshot).done = Some(ts),
                // A kind of event this watcher does not know cannot be verified: say so.
                Ok(other) => *lock(&self.failure) = Some(format!("unexpected event {other:?}")),
                Err(error) => *lock(&self.failure) = Some(error.to_string()),
            }
        }
        lock(&self.log).push(FeedEvent::Unsubscribed);
    }

    /// Rows received so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The last published resolved ts (the start ts before the first).
    pub fn resolved(&self) -> u64 {
        self.resolved.load(Ordering::Acquire)
    }

    /// The error the subscription failed with, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Records the current resolved-ts lag behind the wall clock (the simulated TSO follows
    /// it); returns it in ms.
    pub fn sample_lag(&self) -> u64 {
        let lag = tso_age_ms(self.resolved());
        lock(&self.lags).push(lag);
        lag
    }

    /// The lag samples so far, in ms.
    pub fn lags(&self) -> Vec<u64> {
        lock(&self.lags).clone()
    }

    /// The verifier's report on the snapshot this subscription started with
    /// ([`Client::subscribe_with_snapshot`](kvfeed::Client::subscribe_with_snapshot)), once it
    /// was delivered whole (`None` before, or without one).
    pub fn snapshot_report(&self, commits: &[CommittedRow]) -> Option<SnapshotReport> {
        let snapshot = lock(&self.snapshot);
        let ts = snapshot.done?;
        Some(verify_snapshot(commits, &self.span, ts, &snapshot.rows))
    }

    /// The verifier's report on this subscription's log. With `complete` false (the
    /// subscription was stopped before the end), rows committed above its last resolved ts
    /// are only checked if they were delivered.
    pub fn report(&self, commits: &[CommittedRow], complete: bool) -> Report {
        let log = lock(&self.log);
        if complete {
            return verify(commits, &self.span, self.start_ts, &log);
        }
        verify_up_to(commits, &self.span, self.start_ts, &log, self.resolved())
    }
}
