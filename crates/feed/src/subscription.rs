//! A subscription: the user's handle ([`Subscription`], an event stream) and the client's
//! record of it ([`Sub`]: span, start ts, range lock, parked lock requests, publisher).
//!
//! Delivery is an unbounded channel of batches whose rows hold permits of the client's memory
//! quota until the subscriber reads them: the quota, not the channel, bounds memory, and a
//! resolved ts can be sent while its subscription's state is locked (so publications never
//! overtake each other, and never overtake the rows they cover).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_core::Stream;
use hashbrown::HashMap;
use kvfeed_rangelock::{RangeLock, Ticket};
use kvfeed_regioncache::RegionVerId;
use kvfeed_span::Span;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::delivered::DeliveredRows;
use crate::error::Error;
use crate::event::SnapshotRow;
use crate::event::{Event, RowEvent, SubscriptionId};
use crate::publish::ResolvedPublisher;
use crate::sub_quota::{SubCharge, SubQuota};

/// The quota a batch of rows holds until its last row is read: the client's, and the
/// subscription's own when it has one.
#[derive(Debug, Default)]
#[expect(dead_code, reason = "held for their drop: the permits go back with the batch's last row")]
pub(crate) struct Held {
    pub(crate) client: Option<OwnedSemaphorePermit>,
    pub(crate) own: Option<SubCharge>,
}

/// The rows of a snapshot, as a subscription delivers them before its changes.
pub(crate) type SnapshotRows =
    Pin<Box<dyn Stream<Item = Result<SnapshotRow, Error>> + Send + Sync>>;

/// A subscription's own quota is at its limit.
#[derive(Debug)]
pub(crate) struct QuotaFull;

/// What the client puts on a subscription's channel.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Rows of one region, with the quota they hold.
    Rows(Vec<RowEvent>, Held),
    /// A new resolved ts.
    Resolved(u64),
    /// The subscription failed; the stream ends after it.
    Failed(Error),
}

/// The event stream of one subscription, returned by
/// [`Client::subscribe`](crate::Client::subscribe).
///
/// Read it steadily: rows not yet read hold the client's memory quota (until they are read or
/// the stream is dropped, also after an unsubscribe), and a full quota makes every region worker
/// wait, for every subscription, unless subscriptions have quotas of their own
/// ([`Config::subscription_quota`](crate::Config::subscription_quota)). The stream ends (`None`) once the subscription is drained after
/// [`Client::unsubscribe`](crate::Client::unsubscribe), after its failure was reported, or when
/// the client shuts down. Dropping it unsubscribes.
pub struct Subscription {
    id: SubscriptionId,
    receiver: mpsc::UnboundedReceiver<Delivery>,
    /// Rows of the batch being read, and the quota it holds (released with the last row).
    batch: VecDeque<RowEvent>,
    held: Held,
    /// The rows of the snapshot delivered before the changes
    /// ([`Client::subscribe_with_snapshot`]), and its ts, until it ends.
    ///
    /// [`Client::subscribe_with_snapshot`]: crate::Client::subscribe_with_snapshot
    snapshot: Option<(SnapshotRows, u64)>,
    /// Set once the snapshot failed: the stream has ended.
    ended: bool,
    /// The last resolved ts this stream gave out (the start ts before the first), shared with
    /// the client's record: the GC safe point is held there.
    checkpoint: Arc<AtomicU64>,
    on_drop: Option<Box<dyn FnOnce(SubscriptionId) + Send + Sync>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        id: SubscriptionId,
        checkpoint: Arc<AtomicU64>,
        receiver: mpsc::UnboundedReceiver<Delivery>,
        on_drop: Box<dyn FnOnce(SubscriptionId) + Send + Sync>,
    ) -> Self {
        Self {
            id,
            receiver,
            batch: VecDeque::new(),
            held: Held::default(),
            snapshot: None,
            ended: false,
            checkpoint,
            on_drop: Some(on_drop),
        }
    }

    /// The ts up to which this stream delivered everything: the last [`Event::Resolved`] it
    /// returned (the start ts before the first). Every row committed at or below it was
    /// returned before it; a subscription started from it later ([`Client::subscribe`]) goes on
    /// where this one stopped, with nothing at or below it again and nothing above it missed.
    /// Persist it after the rows before it are safe, to resume after a restart.
    ///
    /// [`Client::subscribe`]: crate::Client::subscribe
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// Delivers the rows of the snapshot at `ts` first, then [`Event::SnapshotDone`], then the
    /// changes.
    pub(crate) fn with_snapshot(mut self, rows: SnapshotRows, ts: u64) -> Self {
        self.snapshot = Some((rows, ts));
        self
    }

    /// The snapshot's next event, while there is a snapshot; its failure ends the stream (and
    /// the subscription).
    fn poll_snapshot(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        let Some((rows, ts)) = &mut self.snapshot else { return Poll::Ready(None) };
        let ts = *ts;
        let event = match std::task::ready!(rows.as_mut().poll_next(cx)) {
            Some(Ok(row)) => Ok(Event::Snapshot(row)),
            Some(Err(error)) => {
                self.snapshot = None;
                self.ended = true;
                if let Some(on_drop) = self.on_drop.take() {
                    on_drop(self.id);
                }
                Err(error)
            }
            None => {
                self.snapshot = None;
                Ok(Event::SnapshotDone(ts))
            }
        };
        Poll::Ready(Some(event))
    }

    /// The subscription's id.
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next event; `Some(Err(_))` once if the subscription failed, then `None`. The same
    /// as [`StreamExt::next`](https://docs.rs/futures/latest/futures/stream/trait.StreamExt.html)
    /// on the [`Stream`] this type implements.
    pub async fn recv(&mut self) -> Option<Result<Event, Error>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.snapshot.is_some() {
            return self.poll_snapshot(cx);
        }
        loop {
            if let Some(row) = self.next_buffered() {
                return Poll::Ready(Some(Ok(row)));
            }
            let Some(delivery) = std::task::ready!(self.receiver.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(event) = self.accept(delivery) {
                return Poll::Ready(Some(event));
            }
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Event, Error>> {
        if self.ended {
            return None;
        }
        if self.snapshot.is_some() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            return match self.poll_snapshot(&mut cx) {
                Poll::Ready(event) => event,
                Poll::Pending => None,
            };
        }
        loop {
            if let Some(row) = self.next_buffered() {
                return Some(Ok(row));
            }
            let delivery = self.receiver.try_recv().ok()?;
            if let Some(event) = self.accept(delivery) {
                return Some(event);
            }
        }
    }

    fn next_buffered(&mut self) -> Option<Event> {
        let row = self.batch.pop_front();
        if self.batch.is_empty() {
            self.held = Held::default();
        }
        row.map(Event::Row)
    }

    fn accept(&mut self, delivery: Delivery) -> Option<Result<Event, Error>> {
        match delivery {
            Delivery::Rows(rows, held) => {
                self.batch = rows.into();
                self.held = held;
                None
            }
            Delivery::Resolved(ts) => {
                self.checkpoint.store(ts, Ordering::Release);
                Some(Ok(Event::Resolved(ts)))
            }
            Delivery::Failed(error) => Some(Err(error)),
        }
    }
}

/// The subscription's events, as [`Subscription::recv`] gives them.
impl Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(self.id);
        }
    }
}

/// A lock request waiting for a range held by an older epoch of a region.
#[derive(Clone, Debug)]
pub(crate) struct LockRequest {
    /// The region version to request.
    pub(crate) region: RegionVerId,
    /// The part of the subscription's span the region covers.
    pub(crate) span: Span,
}

/// The client's record of one subscription.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) id: u64,
    pub(crate) start_ts: u64,
    /// The subscription's own quota of delivered rows not yet read
    /// ([`Config::subscription_quota`](crate::Config::subscription_quota)).
    quota: Option<Arc<SubQuota>>,
    /// The last resolved ts the subscriber read (its stream's checkpoint): every row at or
    /// below it was read. The GC safe point is held here, not at the published resolved ts,
    /// which a slow reader may be far behind.
    pub(crate) read_checkpoint: Arc<AtomicU64>,
    /// The name its metrics carry: the span as hex until the user names it.
    name: Mutex<Arc<str>>,
    /// Set once by unsubscribe or failure; never cleared.
    stopped: AtomicBool,
    /// Wakes tasks waiting on behalf of the subscription (admission, backoff) when it stops.
    stop_signal: watch::Sender<bool>,
    state: Mutex<SubState>,
}

/// The mutable part of a subscription, behind one mutex. No code awaits while holding it.
#[derive(Debug)]
pub(crate) struct SubState {
    /// Which region owns which part of the span, and every part's resolved ts.
    pub(crate) lock: RangeLock,
    /// Lock requests waiting for their ticket to be woken.
    pub(crate) parked: HashMap<Ticket, LockRequest>,
    pub(crate) publisher: ResolvedPublisher,
    /// The subscriber's channel; `None` once the subscription ended.
    pub(crate) sender: Option<mpsc::UnboundedSender<Delivery>>,
    /// Regions below this ts get their locks resolved (raised by `resolve_lock`).
    pub(crate) lock_target: u64,
    /// Ranges locked and unlocked so far (drain check: equal once drained).
    pub(crate) locks: u64,
    pub(crate) unlocks: u64,
    /// The rows delivered above the published resolved ts (`None` with
    /// [`Config::exactly_once`](crate::Config::exactly_once) off, and once the subscription
    /// ended).
    pub(crate) delivered: Option<DeliveredRows>,
}

impl Sub {
    pub(crate) fn new(
        id: u64,
        span: Span,
        start_ts: u64,
        publisher: ResolvedPublisher,
        sender: mpsc::UnboundedSender<Delivery>,
        quota: Option<usize>,
        delivered: Option<DeliveredRows>,
    ) -> Self {
        let name = Mutex::new(Arc::from(span_name(&span)));
        let state = SubState {
            lock: RangeLock::new(span, start_ts),
            parked: HashMap::new(),
            publisher,
            sender: Some(sender),
            lock_target: 0,
            locks: 0,
            unlocks: 0,
            delivered,
        };
        Self {
            id,
            start_ts,
            read_checkpoint: Arc::new(AtomicU64::new(start_ts)),
            name,
            quota: quota.map(SubQuota::new),
            stopped: AtomicBool::new(false),
            stop_signal: watch::Sender::new(false),
            state: Mutex::new(state),
        }
    }

    /// The subscription's state. Poisoning is ignored: every critical section leaves the state
    /// consistent before anything that could panic.
    pub(crate) fn state(&self) -> MutexGuard<'_, SubState> {
        kvfeed_base::lock(&self.state)
    }

    /// The name its metrics carry.
    pub(crate) fn name(&self) -> Arc<str> {
        Arc::clone(&kvfeed_base::lock(&self.name))
    }

    /// Renames it; returns the name it had.
    pub(crate) fn rename(&self, name: &str) -> Arc<str> {
        core::mem::replace(&mut *kvfeed_base::lock(&self.name), Arc::from(name))
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Marks the subscription stopped; true for the first caller only.
    pub(crate) fn mark_stopped(&self) -> bool {
        let first = !self.stopped.swap(true, Ordering::AcqRel);
        if first {
            self.stop_signal.send_replace(true);
        }
        first
    }

    /// Charges `bytes` to the subscription's own quota, if it has one: `Ok(None)` without
    /// one, `Err(QuotaFull)` when it is at its limit (a soft one: see [`SubQuota`]).
    pub(crate) fn charge_own_quota(&self, bytes: usize) -> Result<Option<SubCharge>, QuotaFull> {
        let Some(quota) = &self.quota else { return Ok(None) };
        quota.try_charge(bytes).map(Some).ok_or(QuotaFull)
    }

    /// Resolves once at most half of the subscription's own quota is in use (at once without
    /// one), reserving nothing; false if the subscription stopped meanwhile.
    pub(crate) async fn quota_room(&self) -> bool {
        if let Some(quota) = &self.quota {
            tokio::select! {
                () = quota.room() => {}
                () = self.stopped() => {}
            }
        }
        !self.is_stopped()
    }

    /// Resolves when the subscription is stopped.
    pub(crate) async fn stopped(&self) {
        let mut signal = self.stop_signal.subscribe();
        // The sender lives as long as `self`, so this only ends when the flag is set.
        let _ = signal.wait_for(|stopped| *stopped).await;
    }
}

impl SubState {
    /// Sends to the subscriber, unless the subscription ended. Returns whether it was sent.
    pub(crate) fn deliver(&self, delivery: Delivery) -> bool {
        self.sender.as_ref().is_some_and(|sender| sender.send(delivery).is_ok())
    }
}

/// A span's default metric name: its raw bounds as lowercase hex, `start..end` (an empty side
/// for an unbounded one), as the CLI's `--span-raw` takes them.
fn span_name(span: &Span) -> String {
    use core::fmt::Write;
    let mut name = String::new();
    for (i, bound) in [span.start(), span.end()].into_iter().enumerate() {
        if i == 1 {
            name.push_str("..");
        }
        let raw = bound.decode().map(|raw| raw.as_bytes().to_vec());
        for byte in raw.as_deref().unwrap_or(bound.as_bytes()) {
            let _ = write!(name, "{byte:02x}");
        }
    }
    name
}

/// Shared handle to a subscription record.
pub(crate) type SubRef = Arc<Sub>;
