//! The [`Client`]: the API users call, and the wiring of the stages.
//!
//! `connect` builds the [`Shared`] part and the [`Scheduler`]; `run` starts the other stages as
//! tasks and joins them: the region workers (fed by the scheduler, handing regions back to it),
//! the stream dispatcher (transport events to workers), the lock resolver and the housekeeping.
//! Nothing below this module knows about it.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use kvfeed_regioncache::{PdClient, PdConfig, PdRegionSource};
use kvfeed_span::Span;
use kvfeed_transport::{Events, Transport, TransportConfig};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{self, Config};
use crate::delivered::DeliveredRows;
use crate::error::Error;
use crate::event::{SnapshotRow, SubscriptionId};
use crate::housekeeping;
use crate::lifecycle::{FinishedReceiver, FinishedSender, WorkerMsg, Workers};
use crate::publish::ResolvedPublisher;
use crate::resolver;
use crate::safepoint::{self, ReadHold, SafePointKeeper};
use crate::scheduler::Scheduler;
use crate::shared::{Shared, lock};
use crate::snapshot::{self, Snapshot, SnapshotCursor};
use crate::subscription::{Delivery, Sub, SubRef, Subscription};
use crate::worker;

/// A change-data client of one TiKV cluster. Cheap to clone (all clones share one client).
///
/// Build it with [`Client::connect`], drive it with [`Client::run`] (a future that runs until
/// [`Client::shutdown`]), and [`subscribe`](Client::subscribe) spans.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster_id", &self.inner.shared.cluster_id)
            .field("subscriptions", &self.inner.shared.registry.len())
            .finish_non_exhaustive()
    }
}

/// The client's GC safe point held at or below a ts ([`Client::hold_gc`]) until dropped.
#[derive(Debug)]
pub struct GcHold {
    hold: ReadHold,
}

impl GcHold {
    /// The ts held.
    pub fn ts(&self) -> u64 {
        self.hold.ts()
    }

    /// Moves the hold up to `ts` (a lower one is ignored): the safe point follows on the
    /// client's next refresh ([`Config::gc_refresh`]).
    pub fn advance(&mut self, ts: u64) {
        self.hold.advance(ts);
    }

    /// [`Error::GcSafePointPassed`] once PD let GC pass the held ts (another service moved
    /// PD's minimum, or the hold expired while PD was unreachable): history above it may be
    /// gone.
    pub fn lost(&self) -> Option<Error> {
        self.hold.lost()
    }
}

/// A snapshot of one subscription's progress, from [`Client::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Regions held (being requested, scanning or streaming).
    pub regions: usize,
    /// Of those, the ones whose incremental scan is complete.
    pub initialized: usize,
    /// The subscription's resolved ts now (the minimum over its span).
    pub resolved_ts: u64,
    /// The last resolved ts published to the subscriber (the start ts before the first).
    pub published_ts: u64,
}

/// The client's stages, and what `run` takes to start the tasks.
struct ClientInner {
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    keeper: Arc<SafePointKeeper>,
    parts: Mutex<Option<RunParts>>,
}

/// What [`Client::run`] takes to start the service tasks.
struct RunParts {
    workers: Workers,
    queues: Vec<mpsc::Receiver<WorkerMsg>>,
    finished: (FinishedSender, FinishedReceiver),
    events: Events,
}

impl Client {
    /// Connects to PD (discovering the leader and the cluster id) and prepares the client.
    /// Subscriptions may be made at once, but their work starts only when [`run`](Self::run)
    /// is first polled: until then PD is not asked for their regions and nothing is sent to
    /// TiKV. Must be called within a tokio runtime (multi-threaded for parallel region
    /// workers); the client's background work runs on it.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        config::validate(&config)?;
        let mut pd_config = PdConfig::new(config.pd_endpoints.iter().cloned());
        pd_config.cluster_id = config.cluster_id;
        pd_config.timeout = config.timeout;
        pd_config.connect_timeout = config.timeout;
        pd_config.tls.clone_from(&config.tls);
        let pd = PdClient::connect(pd_config).await?;
        let cluster_id = pd.cluster_id();
        let transport_config = TransportConfig {
            streams_per_store: config.streams_per_store,
            filter_loop: config.filter_loop,
            connect_timeout: config.timeout,
            request_timeout: config.timeout,
            event_channel_bytes: config::queue_bytes(config.memory_quota),
            tls: config.tls.clone(),
            ..TransportConfig::default()
        };
        let (transport, events) = Transport::new(transport_config, cluster_id)
            .map_err(|error| Error::Config(error.to_string()))?;
        let (workers, queues) = Workers::new(config.worker_count);
        let keeper = Arc::new(SafePointKeeper::new(&config));
        let shared = Arc::new(Shared::new(config, PdRegionSource::new(pd), transport, cluster_id));
        let scheduler = Arc::new(Scheduler::new(Arc::clone(&shared), workers.clone()));
        let parts = RunParts { workers, queues, finished: mpsc::unbounded_channel(), events };
        let inner = ClientInner { shared, scheduler, keeper, parts: Mutex::new(Some(parts)) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The cluster id (from PD), sent in every request.
    pub fn cluster_id(&self) -> u64 {
        self.inner.shared.cluster_id
    }

    /// A fresh timestamp from PD's TSO (a start ts for [`subscribe`](Self::subscribe)).
    pub async fn current_ts(&self) -> Result<u64, Error> {
        Ok(self.inner.shared.source.pd().get_ts().await?)
    }

    /// Runs the client's service tasks (region workers, the stream demultiplexer, resolved-ts
    /// publication, lock resolution, slow-region reports) until [`shutdown`](Self::shutdown).
    /// Every subscription still open then ends with [`Error::Shutdown`]. Dropping the future
    /// stops the tasks too. Fails with [`Error::AlreadyRunning`] if called twice.
    pub async fn run(&self) -> Result<(), Error> {
        let parts = lock(&self.inner.parts).take().ok_or(Error::AlreadyRunning)?;
        let shared = &self.inner.shared;
        shared.mark_running();
        // Whatever way `run` ends (shutdown, a failed task, its future dropped), the client
        // stops and every stream ends.
        let _guard = RunGuard(shared);
        let RunParts { workers, queues, finished: (hand_back, finished), events } = parts;
        // Subscriptions made before `run` start now.
        self.inner.scheduler.release_waiting();
        let mut tasks = JoinSet::new();
        for (index, queue) in queues.into_iter().enumerate() {
            let hand_back = hand_back.clone();
            tasks.spawn(worker::run_worker(Arc::clone(shared), hand_back, index, queue));
        }
        drop(hand_back);
        tasks.spawn(Arc::clone(&self.inner.scheduler).run(finished));
        tasks.spawn(worker::run_dispatcher(Arc::clone(shared), workers, events));
        tasks.spawn(housekeeping::run(Arc::clone(shared)));
        tasks.spawn(housekeeping::run_clock(Arc::clone(shared)));
        tasks.spawn(resolver::run(Arc::clone(shared)));
        tasks.spawn(safepoint::run(
            Arc::clone(&self.inner.keeper),
            Arc::clone(shared),
            Arc::clone(&self.inner.scheduler),
            shared.config.gc_refresh,
        ));
        let failure = tokio::select! {
            () = shared.shutdown_requested() => None,
            Some(result) = tasks.join_next() => Some(Error::Internal(match result {
                Err(error) if error.is_panic() => format!("a service task panicked: {error}"),
                _ => "a service task ended".to_owned(),
            })),
        };
        if let Some(error) = &failure {
            tracing::error!(%error, "kvfeed client stopped");
        }
        shared.shut_down();
        tasks.shutdown().await;
        // Subscribers learn why their stream ended: the failure, or a plain shutdown.
        let cause = failure.clone().unwrap_or(Error::Shutdown);
        for sub in end_all_streams(shared, &cause) {
            shared.transport.deregister_everywhere(sub.id).await;
        }
        // Nothing is read any more: GC may go on.
        self.inner.keeper.release(shared).await;
        match failure {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Stops [`run`](Self::run); every open subscription ends with [`Error::Shutdown`]. (When
    /// `run` fails instead, the subscriptions end with its error.)
    pub fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.shut_down();
        if !shared.is_running() {
            // No `run` to end the streams: end them here (a `run` starting later sees the flag
            // and ends at once), and give the GC safe point back.
            end_all_streams(shared, &Error::Shutdown);
            let (keeper, task_shared) = (Arc::clone(&self.inner.keeper), Arc::clone(shared));
            shared.spawn(async move { keeper.release(&task_shared).await });
        }
    }

    /// Subscribes `span` (memcomparable-encoded bounds) from `start_ts`: every row committed in
    /// the span after `start_ts` is delivered at least once, and the subscription's resolved ts
    /// is published as it advances above `start_ts`.
    ///
    /// Before anything is read, the client's PD service GC safe point is set at or below
    /// `start_ts` (and then follows the subscription's checkpoint, see
    /// [`Config::gc_service_name`]), so that TiKV keeps the history the subscription reads.
    ///
    /// Fails with [`Error::InvalidSpan`] if a bound of `span` is not a memcomparable-encoded key
    /// (a raw key passed where an encoded one belongs: [`kvfeed_span::EncodedKey::encode`] makes
    /// one), with [`Error::StartTsBelowGcSafePoint`] if `start_ts` is below the cluster's GC
    /// safe point or PD's minimum service safe point (that history may be gone), and with
    /// [`Error::Pd`] if PD cannot be asked.
    pub async fn subscribe(&self, span: Span, start_ts: u64) -> Result<Subscription, Error> {
        let shared = &self.inner.shared;
        if shared.is_shut_down() {
            return Err(Error::Shutdown);
        }
        check_encoded(&span)?;
        // Held until the subscription is in the registry: no refresh passes `start_ts` first.
        let (held, lost) = self.inner.keeper.hold_for(shared, start_ts).await?;
        safepoint::fail_lost(&self.inner.scheduler, lost);
        let id = shared.registry.next_id();
        let (sender, receiver) = mpsc::unbounded_channel();
        let publisher = ResolvedPublisher::new(start_ts, shared.config.advance_interval);
        let quota = shared.config.subscription_quota;
        let delivered =
            shared.config.exactly_once.then(|| DeliveredRows::new(Arc::clone(&shared.prewrites)));
        let sub =
            Arc::new(Sub::new(id, span.clone(), start_ts, publisher, sender, quota, delivered));
        shared.registry.insert(Arc::clone(&sub));
        drop(held);
        // A shutdown between the check above and the insert may have ended every stream it
        // found without this one: end it here. (After the insert, a shutdown finds it.)
        if shared.is_shut_down() {
            shared.registry.remove(id);
            return Err(Error::Shutdown);
        }
        tracing::info!(subscription = id, ?span, start_ts, "subscribed");
        let read_checkpoint = Arc::clone(&sub.read_checkpoint);
        self.inner.scheduler.start(sub);
        let weak: Weak<Scheduler> = Arc::downgrade(&self.inner.scheduler);
        let on_drop = Box::new(move |id: SubscriptionId| {
            if let Some(scheduler) = weak.upgrade() {
                scheduler.unsubscribe(id.0);
            }
        });
        Ok(Subscription::new(SubscriptionId(id), read_checkpoint, receiver, on_drop))
    }

    /// The keys of `span` (memcomparable-encoded bounds, as for [`subscribe`](Self::subscribe))
    /// and their values as of `ts`, in key order: a consistent copy of the span at `ts`, read
    /// from each region's leader in pages (see [`Snapshot`]). Together with a subscription from
    /// `ts` ([`subscribe`](Self::subscribe)), which delivers every change committed after
    /// `ts`, it is the span's whole history.
    ///
    /// The client's GC safe point is held at `ts` until the snapshot ends or is dropped. Fails
    /// with [`Error::InvalidSpan`] for a bound that is not an encoded key and with
    /// [`Error::StartTsBelowGcSafePoint`] for a `ts` below the GC safe point; the stream fails
    /// with [`Error::Read`] when a part of the span cannot be read, and with
    /// [`Error::GcSafePointPassed`] if PD lets GC pass `ts` while it reads.
    pub async fn snapshot(&self, span: Span, ts: u64) -> Result<Snapshot, Error> {
        self.start_snapshot(span, ts, None).await
    }

    /// A consistent initial load, then the changes: a subscription of `span` from `ts` whose
    /// stream first gives the span's keys as of `ts` ([`Event::Snapshot`], in key order), then
    /// [`Event::SnapshotDone`], then the changes committed after `ts` as
    /// [`subscribe`](Self::subscribe) gives them. The snapshot plus the changes is the span's
    /// whole history from `ts`: the change stream is registered before the snapshot is read (its
    /// rows wait, under the memory quota, until the snapshot is delivered), so no change is
    /// missed. A failed snapshot ends the stream with its error.
    ///
    /// [`Event::Snapshot`]: crate::Event::Snapshot
    /// [`Event::SnapshotDone`]: crate::Event::SnapshotDone
    pub async fn subscribe_with_snapshot(
        &self,
        span: Span,
        ts: u64,
    ) -> Result<Subscription, Error> {
        let subscription = self.subscribe(span.clone(), ts).await?;
        let snapshot = self.snapshot(span, ts).await?;
        let ts = snapshot.ts();
        Ok(subscription.with_snapshot(Box::pin(snapshot), ts))
    }

    /// The rest of a snapshot of `span` at `ts` after `cursor` ([`Snapshot::cursor`] of an
    /// interrupted one): the keys after the cursor's, as [`snapshot`](Self::snapshot) would
    /// have delivered them. A cursor past the span's end gives an empty snapshot.
    pub async fn resume_snapshot(
        &self,
        span: Span,
        ts: u64,
        cursor: &SnapshotCursor,
    ) -> Result<Snapshot, Error> {
        self.start_snapshot(span, ts, Some(cursor)).await
    }

    /// Starts a snapshot of `span` at `ts`, or of its part after `cursor`.
    async fn start_snapshot(
        &self,
        span: Span,
        ts: u64,
        cursor: Option<&SnapshotCursor>,
    ) -> Result<Snapshot, Error> {
        if self.inner.shared.is_shut_down() {
            return Err(Error::Shutdown);
        }
        check_encoded(&span)?;
        let hold = self.hold_read(ts).await?;
        let rest = match cursor {
            Some(cursor) => snapshot::rest_after(&span, cursor),
            None => Some(span),
        };
        tracing::info!(?rest, ts, resumed = cursor.is_some(), "snapshot");
        Ok(snapshot::start(Arc::clone(&self.inner.shared), rest, ts, hold))
    }

    /// Holds the GC safe point at `ts` for a read (failing the subscriptions found lost).
    async fn hold_read(&self, ts: u64) -> Result<ReadHold, Error> {
        let (hold, lost) = self.inner.keeper.hold_read(&self.inner.shared, ts).await?;
        safepoint::fail_lost(&self.inner.scheduler, lost);
        Ok(hold)
    }

    /// The value of the raw `key` as of `ts` (`None` when it has none), read from its region's
    /// leader on the snapshot path (locks resolved, region errors retried, the GC safe point
    /// held while it reads).
    pub async fn get(&self, key: &[u8], ts: u64) -> Result<Option<Bytes>, Error> {
        let mut found = self.batch_get(&[Bytes::copy_from_slice(key)], ts).await?;
        Ok(found.pop().map(|row| row.value))
    }

    /// The values of those of the raw `keys` that have one as of `ts`, in the order asked
    /// (keys without a value are left out; a key asked twice comes once), one `KvBatchGet` per
    /// region.
    pub async fn batch_get(&self, keys: &[Bytes], ts: u64) -> Result<Vec<SnapshotRow>, Error> {
        if self.inner.shared.is_shut_down() {
            return Err(Error::Shutdown);
        }
        let hold = self.hold_read(ts).await?;
        snapshot::batch_get(&self.inner.shared, &hold, keys).await
    }

    /// Holds the client's GC safe point at or below `ts` until the hold is dropped: for a
    /// consumer that buffers what it read (ordering the rows of several subscriptions, say)
    /// and may subscribe again from a ts below its subscriptions' checkpoints, such as
    /// kvfeed-tidb's watcher when a truncated table comes back under a new id.
    /// [`GcHold::advance`] moves it up as the consumer's own checkpoint advances.
    ///
    /// Fails with [`Error::StartTsBelowGcSafePoint`] for a `ts` below the GC safe point.
    pub async fn hold_gc(&self, ts: u64) -> Result<GcHold, Error> {
        if self.inner.shared.is_shut_down() {
            return Err(Error::Shutdown);
        }
        Ok(GcHold { hold: self.hold_read(ts).await? })
    }

    /// The id of the client's PD service GC safe point (`kvfeed-` and
    /// [`Config::gc_service_name`], or a name unique to the client).
    pub fn gc_service_id(&self) -> &str {
        self.inner.keeper.service_id()
    }

    /// Names a subscription in the metrics (the `name` label of its series, by default its
    /// span's raw bounds in hex): a table name, say. An unknown id is ignored.
    pub fn name_subscription(&self, id: SubscriptionId, name: &str) {
        if let Some(sub) = self.sub(id) {
            let old = sub.rename(name);
            self.inner.shared.metrics.forget_subscription(sub.id, &old);
        }
    }

    /// Stops a subscription. Idempotent; an unknown id is ignored. Returns at once: the
    /// subscription's stream ends once every region is released and deregistered from TiKV.
    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.inner.scheduler.unsubscribe(id.0);
    }

    /// Resolves the locks below `target_ts` in every initialized region of the subscription
    /// whose resolved ts is below it (in the background, at most once per region per
    /// cooldown). Returns how many regions were queued. Transactions are settled as client-go
    /// does: only expired ones are rolled back, async-commit ones through their secondaries.
    ///
    /// Fails with [`Error::LockTargetTooRecent`] if `target_ts` is not below PD's clock (as
    /// last fetched, estimated forward) minus [`LOCK_RESOLVE_MARGIN`](crate::LOCK_RESOLVE_MARGIN).
    pub fn resolve_lock(&self, id: SubscriptionId, target_ts: u64) -> Result<usize, Error> {
        let sub = self.sub(id).ok_or(Error::UnknownSubscription(id))?;
        let limit = self.inner.shared.clock.estimate().map_or(0, resolver::target_limit);
        if target_ts >= limit {
            return Err(Error::LockTargetTooRecent { target_ts, limit });
        }
        Ok(self.inner.shared.resolve_lock(&sub, target_ts))
    }

    /// Regions currently held by the subscription (being requested, scanning or streaming);
    /// 0 for an unknown id.
    pub fn region_count(&self, id: SubscriptionId) -> usize {
        self.sub(id).map_or(0, |sub| sub.state().lock.len())
    }

    /// The subscription's resolved ts right now (the minimum over its span), whether or not it
    /// was published yet; `None` for an unknown id.
    pub fn resolved_ts(&self, id: SubscriptionId) -> Option<u64> {
        self.sub(id).map(|sub| sub.state().lock.resolved_ts())
    }

    /// A snapshot of the subscription's progress (`O(1)`); `None` for an unknown id.
    pub fn stats(&self, id: SubscriptionId) -> Option<SubscriptionStats> {
        let sub = self.sub(id)?;
        let state = sub.state();
        Some(SubscriptionStats {
            regions: state.lock.len(),
            initialized: state.lock.initialized_len(),
            resolved_ts: state.lock.resolved_ts(),
            published_ts: state.publisher.published(),
        })
    }

    /// Bytes the client holds on the way as [`Config::memory_quota`] counts them (events
    /// waiting in the transport's queue, prewrites waiting for their commits in memory,
    /// delivered rows the subscribers have not read yet): at most the quota, unless spilling
    /// is off or the keys of pending prewrites alone pass their part.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.shared.buffered_bytes()
    }

    /// Bytes of prewrite values spilled to disk ([`Config::spill_dir`]), waiting for their
    /// commits.
    pub fn spilled_bytes(&self) -> u64 {
        self.inner.shared.prewrites.disk_bytes()
    }

    /// The client's Prometheus registry, to serve beside an application's own metrics (with the
    /// `prometheus-registry` feature; [`metrics_text`](Self::metrics_text) needs none).
    #[cfg(feature = "prometheus-registry")]
    pub fn metrics(&self) -> &prometheus::Registry {
        &self.inner.shared.metrics.registry
    }

    /// The client's metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let families = self.inner.shared.metrics.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
    }

    fn sub(&self, id: SubscriptionId) -> Option<SubRef> {
        self.inner.shared.registry.get(id.0)
    }
}

/// Both bounds of the span are memcomparable-encoded keys (or unbounded).
fn check_encoded(span: &Span) -> Result<(), Error> {
    let sides = [
        ("start", span.start(), span.is_start_unbounded()),
        ("end", span.end(), span.is_end_unbounded()),
    ];
    for (side, key, unbounded) in sides {
        if !unbounded && let Err(error) = key.decode() {
            return Err(Error::InvalidSpan(format!(
                "the {side} of {span:?} is not a memcomparable-encoded key ({error})"
            )));
        }
    }
    Ok(())
}

/// Ends every subscription's stream (with `cause`, unless it was stopping already) and forgets
/// them; returns them.
fn end_all_streams(shared: &Shared, cause: &Error) -> Vec<SubRef> {
    let subs = shared.registry.drain();
    for sub in &subs {
        let first = sub.mark_stopped();
        let mut state = sub.state();
        if first {
            state.deliver(Delivery::Failed(cause.clone()));
            let _ = state.lock.stop();
        }
        state.sender = None;
        state.delivered = None;
        shared.metrics.forget_subscription(sub.id, &sub.name());
    }
    subs
}

/// Stops the client when [`Client::run`] ends, however it ends.
struct RunGuard<'a>(&'a Shared);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.shut_down();
        end_all_streams(self.0, &Error::Shutdown);
    }
}
