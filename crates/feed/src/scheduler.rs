//! The scheduler stage: getting regions onto streams and taking them off again.
//!
//! It owns the work between PD and the workers: range tasks (PD -> regions -> range lock, at
//! most `range_concurrency` at once), region requests (range lock -> leader -> store version
//! check -> the store's initial-scan window -> worker -> `Transport::register`, at most
//! [`MAX_REQUESTERS`] tasks, the other regions waiting in a backlog), and what happens when a
//! region comes back from its worker ([`Finished`]: retry, unlock and reload, release, or fail the
//! subscription). Stopping a subscription and ending its stream once drained live here too.
//!
//! The scheduler sends to the workers ([`Workers`]) and reads their hand-backs from one channel;
//! it never calls into a worker. No service loop waits for a lock: a request that must wait is
//! parked in its subscription with its ticket, and whoever unlocks the blocking range retries it
//! on the spot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::HashMap;
use kvfeed_base::Backoff;
use kvfeed_rangelock::LockOutcome;
use kvfeed_span::Span;
use kvfeed_transport::{RegionEpoch, RegisterRequest, StoreTarget};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::backoff;
use crate::error::Error;
use crate::lifecycle::{Finished, FinishedReceiver, Owned, RegionEnd, WorkerMsg, Workers};
use crate::shared::{Shared, lock};
use crate::subscription::{Delivery, LockRequest, SubRef, SubState};
use crate::version::TikvVersion;

/// Backoff bounds for reloading a range whose regions PD does not know yet (holes, stale
/// answers, PD errors).
const RELOAD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));

/// Region request tasks running at most (each locates one region, waits for its store's
/// initial-scan window and registers it, then takes the next from the backlog).
pub(crate) const MAX_REQUESTERS: usize = 512;

/// How often a store refused for its version is looked up in PD again.
const STORE_RECHECK: Duration = Duration::from_secs(1);

/// The scheduler: its backlog, admission windows and task slots.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    workers: Workers,
    /// Regions waiting for a request task.
    backlog: Mutex<Backlog>,
    /// Per-store initial-scan windows.
    admission: Mutex<HashMap<u64, Arc<Semaphore>>>,
    /// Stores refused for their version: what was logged, and when PD is asked again.
    refused_stores: Mutex<HashMap<u64, RefusedStore>>,
    /// Range tasks running at once.
    range_slots: Arc<Semaphore>,
}

/// A store refused for its version (see [`Scheduler::refuses_store`]).
#[derive(Debug)]
struct RefusedStore {
    /// The version last logged.
    version: String,
    /// When its metadata is next reloaded from PD.
    recheck_at: Instant,
}

/// Regions waiting for a request task.
#[derive(Debug, Default)]
struct Backlog {
    waiting: VecDeque<Owned>,
    /// Request tasks running.
    requesters: usize,
}

/// Work to start once a subscription's state is unlocked.
#[derive(Debug)]
enum FollowUp {
    /// Request a locked region after the delay.
    Request(Owned, Duration),
    /// Load the range's regions from PD and lock them, after `attempt` backoffs.
    Reload(SubRef, Span, u32),
}

/// What to do with a region's range once it is unlocked.
#[derive(Debug)]
enum AfterUnlock {
    /// Re-divide the range through PD (the region split, merged or moved).
    Reload,
    /// Nothing: the subscription stopped.
    Release,
}

impl Scheduler {
    pub(crate) fn new(shared: Arc<Shared>, workers: Workers) -> Self {
        let range_slots = Arc::new(Semaphore::new(shared.config.range_concurrency));
        Self {
            shared,
            workers,
            backlog: Mutex::default(),
            admission: Mutex::default(),
            refused_stores: Mutex::default(),
            range_slots,
        }
    }

    /// Starts a new subscription: loads and locks the regions of its whole span.
    pub(crate) fn start(self: &Arc<Self>, sub: SubRef) {
        let span = sub.state().lock.span().clone();
        self.spawn_range(sub, span, 0);
    }

    /// The scheduler's loop: regions handed back by the workers.
    pub(crate) async fn run(self: Arc<Self>, mut finished: FinishedReceiver) {
        while let Some(Finished { owned, end }) = finished.recv().await {
            match end {
                RegionEnd::Retry(delay) => self.spawn_request(owned, delay),
                RegionEnd::Reload => self.unlock(owned, AfterUnlock::Reload),
                RegionEnd::Release => self.unlock(owned, AfterUnlock::Release),
                RegionEnd::Fail(error) => {
                    let sub = Arc::clone(&owned.sub);
                    self.unlock(owned, AfterUnlock::Release);
                    self.stop(&sub, Some(*error));
                }
            }
        }
    }

    /// Stops a subscription by id, if it is known.
    pub(crate) fn unsubscribe(self: &Arc<Self>, id: u64) {
        if let Some(sub) = self.shared.registry.get(id) {
            self.stop(&sub, None);
        }
    }

    /// Stops a subscription (once): reports `failure` to the subscriber if given, stops the
    /// range lock, releases its regions waiting in the backlog and tells every worker to release
    /// the others. The stream ends when the last region is released
    /// ([`Scheduler::finish_drain`]).
    pub(crate) fn stop(self: &Arc<Self>, sub: &SubRef, failure: Option<Error>) {
        if !sub.mark_stopped() {
            return;
        }
        let drained = {
            let mut state = sub.state();
            if let Some(error) = failure {
                tracing::warn!(subscription = sub.id, %error, "subscription failed");
                state.deliver(Delivery::Failed(error));
            } else {
                tracing::info!(subscription = sub.id, "unsubscribing");
            }
            let stopped = state.lock.stop();
            // Retrying a woken ticket of a stopped lock is a cancellation: nothing to retry.
            state.parked.clear();
            stopped.drained
        };
        if drained {
            self.finish_drain(sub);
        }
        // Regions waiting for a request task are released at once.
        let waiting: VecDeque<Owned> = {
            let mut backlog = lock(&self.backlog);
            let (mine, others) =
                backlog.waiting.drain(..).partition(|owned: &Owned| owned.sub.id == sub.id);
            backlog.waiting = others;
            mine
        };
        for owned in waiting {
            self.unlock(owned, AfterUnlock::Release);
        }
        if self.shared.is_running() {
            let workers = self.workers.clone();
            let id = sub.id;
            self.shared.spawn(async move { workers.stop_everywhere(id).await });
        }
    }

    /// The subscription released its last region: deregister it from every stream, forget it,
    /// and end its stream.
    fn finish_drain(&self, sub: &SubRef) {
        let shared = Arc::clone(&self.shared);
        let sub = Arc::clone(sub);
        self.shared.spawn(async move {
            shared.transport.deregister_everywhere(sub.id).await;
            shared.registry.remove(sub.id);
            shared.metrics.forget_subscription(sub.id);
            let mut state = sub.state();
            if state.locks != state.unlocks {
                tracing::error!(
                    subscription = sub.id,
                    locks = state.locks,
                    unlocks = state.unlocks,
                    "drained with locks and unlocks unpaired"
                );
                shared.metrics.internal_errors.inc();
            }
            state.sender = None;
            tracing::info!(subscription = sub.id, locks = state.locks, "subscription drained");
        });
    }

    /// The initial-scan window of a store.
    fn admission(&self, store_id: u64) -> Arc<Semaphore> {
        let mut windows = lock(&self.admission);
        let window = self.shared.config.initial_scan_window;
        Arc::clone(windows.entry(store_id).or_insert_with(|| Arc::new(Semaphore::new(window))))
    }

    /// Locks one region's part of the span, recording what to do next in `out`.
    /// `attempt` is the backoff step for reloading what the lock reports stale (it grows with
    /// consecutive reloads of a range).
    fn lock_region(
        &self,
        sub: &SubRef,
        state: &mut SubState,
        request: LockRequest,
        attempt: u32,
        out: &mut Vec<FollowUp>,
    ) {
        let region_id = request.region.id;
        match state.lock.lock(&request.span, region_id, request.region.epoch.version) {
            Ok(LockOutcome::Locked { checkpoint_ts }) => {
                state.locks += 1;
                let owned = Owned {
                    sub: Arc::clone(sub),
                    region: request.region,
                    span: request.span,
                    checkpoint_ts,
                    failures: 0,
                };
                out.push(FollowUp::Request(owned, Duration::ZERO));
            }
            Ok(LockOutcome::Wait(ticket)) => {
                tracing::debug!(subscription = sub.id, region = region_id, "lock waits");
                state.parked.insert(ticket, request);
            }
            Ok(LockOutcome::Stale { retry }) => {
                tracing::debug!(subscription = sub.id, region = region_id, ?retry, "stale lock");
                out.extend(
                    retry.into_iter().map(|span| FollowUp::Reload(Arc::clone(sub), span, attempt)),
                );
            }
            Ok(LockOutcome::Cancelled) => {}
            Err(error) => {
                // Ranges are intersected with the span before locking: this is a bug.
                tracing::error!(subscription = sub.id, region = region_id, %error, "lock refused");
                self.shared.metrics.internal_errors.inc();
            }
        }
    }

    /// Starts the follow-ups.
    fn spawn_all(self: &Arc<Self>, out: Vec<FollowUp>) {
        for follow_up in out {
            match follow_up {
                FollowUp::Request(owned, delay) => self.spawn_request(owned, delay),
                FollowUp::Reload(sub, span, attempt) => self.spawn_range(sub, span, attempt),
            }
        }
    }

    /// Requests a region after `delay`. At most [`MAX_REQUESTERS`] request tasks run; beyond
    /// that, regions wait in the backlog as plain [`Owned`] values (a few hundred bytes, where a
    /// waiting task would hold kilobytes: a subscription of a million regions locks them all at
    /// once).
    fn spawn_request(self: &Arc<Self>, owned: Owned, delay: Duration) {
        if !delay.is_zero() {
            let scheduler = Arc::clone(self);
            self.shared.spawn(async move {
                let sub = Arc::clone(&owned.sub);
                if scheduler.pause(&sub, delay).await {
                    scheduler.spawn_request(owned, Duration::ZERO);
                } else {
                    scheduler.unlock(owned, AfterUnlock::Release);
                }
            });
            return;
        }
        {
            let mut backlog = lock(&self.backlog);
            if backlog.requesters >= MAX_REQUESTERS {
                backlog.waiting.push_back(owned);
                return;
            }
            backlog.requesters += 1;
        }
        let scheduler = Arc::clone(self);
        self.shared.spawn(async move {
            let mut next = Some(owned);
            while let Some(owned) = next {
                Arc::clone(&scheduler).request_region(owned).await;
                let mut backlog = lock(&scheduler.backlog);
                next = backlog.waiting.pop_front();
                if next.is_none() {
                    backlog.requesters -= 1;
                }
            }
        });
    }

    fn spawn_range(self: &Arc<Self>, sub: SubRef, span: Span, attempt: u32) {
        self.shared.spawn(Arc::clone(self).load_range(sub, span, attempt));
    }

    /// Releases a region's range (the lock keeps its resolved ts), retries the requests it
    /// woke, and reloads the range if asked to. Ends the subscription if this was its last
    /// region after a stop.
    fn unlock(self: &Arc<Self>, owned: Owned, then: AfterUnlock) {
        let sub = owned.sub;
        let mut out = Vec::new();
        let drained = {
            let mut state = sub.state();
            let drained = match state.lock.unlock(
                &owned.span,
                owned.region.id,
                owned.region.epoch.version,
                None,
            ) {
                Ok(unlocked) => {
                    state.unlocks += 1;
                    for ticket in unlocked.woken {
                        if let Some(request) = state.parked.remove(&ticket) {
                            self.lock_region(&sub, &mut state, request, 1, &mut out);
                        }
                    }
                    unlocked.drained
                }
                Err(error) => {
                    tracing::error!(
                        subscription = sub.id,
                        region = owned.region.id,
                        %error,
                        "unlock refused"
                    );
                    self.shared.metrics.internal_errors.inc();
                    false
                }
            };
            if matches!(then, AfterUnlock::Reload) && !sub.is_stopped() {
                out.push(FollowUp::Reload(Arc::clone(&sub), owned.span, owned.failures.max(1)));
            }
            drained
        };
        self.spawn_all(out);
        if drained {
            self.finish_drain(&sub);
        }
    }

    /// Counts a failed attempt of the region and waits its backoff; returns whether the
    /// subscription is still live.
    async fn back_off(&self, owned: &mut Owned) -> bool {
        owned.failures = owned.failures.saturating_add(1);
        let delay =
            backoff::delay(&self.shared.config.region_backoff, owned.failures, owned.region.id);
        self.pause(&owned.sub, delay).await
    }

    /// Sleeps `delay`, unless the subscription stops first. Returns whether it is still live.
    async fn pause(&self, sub: &SubRef, delay: Duration) -> bool {
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = sub.stopped() => {}
            }
        }
        !sub.is_stopped()
    }

    /// A range task: loads the regions of `span` from PD in batches, and locks each region's
    /// part of it. Holes (regions PD does not know yet) are reloaded after a backoff.
    async fn load_range(self: Arc<Self>, sub: SubRef, span: Span, attempt: u32) {
        let delay = backoff::delay(&RELOAD_BACKOFF, attempt, sub.id ^ span_salt(&span));
        if !self.pause(&sub, delay).await {
            return;
        }
        let _slot = tokio::select! {
            slot = Arc::clone(&self.range_slots).acquire_owned() => slot,
            () = sub.stopped() => return,
        };
        let mut cursor = span;
        let mut failures = 0u32;
        loop {
            if sub.is_stopped() {
                return;
            }
            let batch = match self
                .shared
                .source
                .load_regions(&cursor, self.shared.config.region_scan_limit)
                .await
            {
                Ok(batch) => batch,
                Err(error @ kvfeed_regioncache::Error::ClusterIdMismatch { .. }) => {
                    self.stop(&sub, Some(Error::from(error)));
                    return;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(subscription = sub.id, %error, failures, "loading regions failed");
                    self.shared.metrics.region_errors.with_label_values(&["LoadRegions"]).inc();
                    let delay = backoff::delay(&RELOAD_BACKOFF, failures, sub.id);
                    if !self.pause(&sub, delay).await {
                        return;
                    }
                    continue;
                }
            };
            let mut out = Vec::new();
            {
                let mut state = sub.state();
                // Each region locks all of its part of the subscription's span, not only of
                // this range: after a merge, the halves of the new region are reloaded by two
                // range tasks, and the lock holds one range per region.
                let whole = state.lock.span().clone();
                for region in &batch.regions {
                    if let Ok(part) = region.span().intersect(&whole) {
                        let request = LockRequest { region: region.ver_id(), span: part };
                        self.lock_region(&sub, &mut state, request, attempt + 1, &mut out);
                    }
                }
            }
            for hole in batch.holes {
                tracing::debug!(subscription = sub.id, ?hole, "PD has no region there yet");
                out.push(FollowUp::Reload(Arc::clone(&sub), hole, attempt + 1));
            }
            self.spawn_all(out);
            match batch.resume {
                Some(resume) => match Span::new(resume, cursor.end().clone()) {
                    Ok(rest) => cursor = rest,
                    Err(_) => return,
                },
                None => return,
            }
        }
    }

    /// Whether the store's version (as PD reported it) is outside [`Config::store_versions`].
    /// A refused store is logged once per version, and its metadata is reloaded from PD at
    /// most once per [`STORE_RECHECK`], however many regions wait for it, so an upgrade is seen.
    ///
    /// [`Config::store_versions`]: crate::Config::store_versions
    fn refuses_store(&self, store_id: u64, version: &str) -> bool {
        let Some(supported) = &self.shared.config.store_versions else { return false };
        let parsed = version.parse::<TikvVersion>();
        if parsed.as_ref().is_ok_and(|v| supported.contains(v)) {
            return false;
        }
        let now = Instant::now();
        let mut refused = lock(&self.refused_stores);
        let store = refused.entry(store_id).or_insert_with(|| RefusedStore {
            version: String::new(),
            recheck_at: now + STORE_RECHECK,
        });
        if store.version != version {
            store.version = version.to_owned();
            match parsed {
                Ok(_) => tracing::warn!(
                    store = store_id,
                    version,
                    supported = %format_args!("{}..{}", supported.start, supported.end),
                    "store version outside the supported range: its regions wait for an upgrade"
                ),
                Err(error) => tracing::warn!(
                    store = store_id,
                    %error,
                    "store reports no valid version: its regions wait for an upgrade"
                ),
            }
        }
        if now >= store.recheck_at {
            store.recheck_at = now + STORE_RECHECK;
            self.shared.source.mark_store_stale(store_id);
        }
        true
    }

    /// A region request: finds the leader, waits for a place in the store's initial-scan
    /// window, hands the region to its worker and registers it on a stream of the store.
    async fn request_region(self: Arc<Self>, mut owned: Owned) {
        let sub = Arc::clone(&owned.sub);
        if sub.is_stopped() {
            self.unlock(owned, AfterUnlock::Release);
            return;
        }
        let ctx = loop {
            match self.shared.source.rpc_context(owned.region).await {
                Ok(Some(ctx)) if self.refuses_store(ctx.peer.store_id, &ctx.store_version) => {
                    // Not a store to talk to yet: keep the range locked and ask again.
                    self.shared.metrics.region_errors.with_label_values(&["StoreVersion"]).inc();
                    if !self.back_off(&mut owned).await {
                        self.unlock(owned, AfterUnlock::Release);
                        return;
                    }
                }
                Ok(Some(ctx)) => break ctx,
                Ok(None) => {
                    // The region version is gone from the cache (or has no usable peer):
                    // re-divide its range.
                    self.shared
                        .metrics
                        .region_errors
                        .with_label_values(&["RPCCtxUnavailable"])
                        .inc();
                    self.unlock(owned, AfterUnlock::Reload);
                    return;
                }
                Err(error @ kvfeed_regioncache::Error::ClusterIdMismatch { .. }) => {
                    self.stop(&sub, Some(Error::from(error)));
                    self.unlock(owned, AfterUnlock::Release);
                    return;
                }
                Err(error) => {
                    self.shared.metrics.region_errors.with_label_values(&["GetStoreErr"]).inc();
                    tracing::debug!(region = owned.region.id, %error, "locating the leader failed");
                    if error.is_retryable() {
                        if !self.back_off(&mut owned).await {
                            self.unlock(owned, AfterUnlock::Release);
                            return;
                        }
                    } else {
                        owned.failures = owned.failures.saturating_add(1);
                        self.shared.source.invalidate(owned.region);
                        self.unlock(owned, AfterUnlock::Reload);
                        return;
                    }
                }
            }
        };
        let store_id = ctx.peer.store_id;
        let window = self.admission(store_id);
        let permit = tokio::select! {
            permit = window.acquire_owned() => permit.ok(),
            () = sub.stopped() => None,
        };
        if sub.is_stopped() {
            self.unlock(owned, AfterUnlock::Release);
            return;
        }
        let region_id = owned.region.id;
        let seq = self.shared.next_seq();
        let request = RegisterRequest {
            request_id: sub.id,
            region_id,
            epoch: RegionEpoch {
                conf_ver: owned.region.epoch.conf_ver,
                version: owned.region.epoch.version,
            },
            span: owned.span.clone(),
            checkpoint_ts: owned.checkpoint_ts,
        };
        let target = StoreTarget { store_id, address: ctx.address.to_string() };
        let worker = self.workers.index_of(region_id);
        tracing::debug!(
            subscription = sub.id,
            region = region_id,
            store = store_id,
            checkpoint_ts = owned.checkpoint_ts,
            "registering region"
        );
        if self
            .workers
            .send_to(worker, WorkerMsg::Pending { owned, seq, ctx, permit })
            .await
            .is_err()
        {
            return; // The client is shutting down.
        }
        let result = self.shared.transport.register(&target, request).await;
        self.shared.metrics.region_requests.inc();
        let registered =
            WorkerMsg::Registered { sub: sub.id, region: region_id, seq, result: result.err() };
        let _ = self.workers.send_to(worker, registered).await;
    }
}

/// A salt for a range's backoff jitter.
fn span_salt(span: &Span) -> u64 {
    seahash::hash(span.start().as_bytes())
}
