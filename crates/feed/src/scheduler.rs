//! The scheduler stage: getting regions onto streams and taking them off again.
//!
//! It owns the work between PD and the workers: range tasks (PD -> regions -> range lock, at
//! most `range_concurrency` at once), region requests (range lock -> leader -> store version
//! check -> the store's initial-scan window -> worker -> `Transport::register`), and what
//! happens when a region comes back from its worker ([`Finished`]: retry, unlock and reload,
//! release, or fail the subscription). Stopping a subscription and ending its stream once drained
//! live here too.
//!
//! Region requests run on at most [`MAX_REQUESTERS`] tasks shared by every store (the other
//! regions wait in a backlog), and no request task ever waits for one store: a region whose
//! store is refused for its version is parked in that store's queue (looked at again once per
//! [`STORE_RECHECK`]), one that finds its store's initial-scan window full waits in the store's
//! queue for a place (one admission task per store hands the places out in order), and the
//! register call, which may wait for a connection to the store, runs on a task of its own (there
//! are at most as many as the windows have places). A store that is refused, full or
//! unreachable holds up only its own regions.
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
use kvfeed_regioncache::RpcContext;
use kvfeed_span::Span;
use kvfeed_transport::{RegionEpoch, RegisterRequest, StoreTarget};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backoff;
use crate::error::Error;
use crate::lifecycle::{Finished, FinishedReceiver, Owned, RegionEnd, WorkerMsg, Workers};
use crate::shared::{Shared, lock};
use crate::subscription::{Delivery, LockRequest, SubRef, SubState};
use crate::version::TikvVersion;

/// Backoff bounds for reloading a range whose regions PD does not know yet (holes, stale
/// answers, PD errors).
const RELOAD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(2));

/// Region request tasks running at most (each locates one region and passes it to its store's
/// queue, then takes the next from the backlog).
pub(crate) const MAX_REQUESTERS: usize = 512;

/// How often a store refused for its version is looked up in PD again.
const STORE_RECHECK: Duration = Duration::from_secs(1);

/// The scheduler: its backlog, admission windows and task slots.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    workers: Workers,
    /// Regions waiting for a request task.
    backlog: Mutex<Backlog>,
    /// Per store: its initial-scan window and the regions waiting for it or for the store's
    /// version. Entries of stores without a window place in use, waiting regions or a refusal
    /// are forgotten when a subscription stops.
    stores: Mutex<HashMap<u64, StoreQueue>>,
    /// Range tasks running at once.
    range_slots: Arc<Semaphore>,
    /// Subscriptions made before `Client::run` started, which start with it; `None` once it
    /// has.
    before_run: Mutex<Option<Vec<SubRef>>>,
}

/// One store's side of region requests.
#[derive(Debug)]
struct StoreQueue {
    /// The initial-scan window: one permit per region that may scan at once.
    window: Arc<Semaphore>,
    /// Regions located on the store waiting for a place in its window, oldest first.
    waiting: VecDeque<(Owned, RpcContext)>,
    /// Whether the store's admission task runs (it alone takes from `waiting`).
    admitting: bool,
    /// Set while PD reports the store at a version outside `Config::store_versions`.
    refused: Option<RefusedStore>,
}

/// A store refused for its version (see [`Scheduler::park_if_refused`]).
#[derive(Debug)]
struct RefusedStore {
    /// The version last logged.
    version: String,
    /// Regions waiting for the store to be looked up again; requested anew once per
    /// [`STORE_RECHECK`] by the store's recheck task.
    parked: Vec<Owned>,
    /// Whether the recheck task runs.
    rechecking: bool,
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
    /// Load the range's regions from PD and lock them, after `attempt` backoffs of
    /// [`RELOAD_BACKOFF`] and at least `delay`.
    Reload { sub: SubRef, span: Span, attempt: u32, delay: Duration },
}

/// What to do with a region's range once it is unlocked.
#[derive(Debug)]
enum AfterUnlock {
    /// Re-divide the range through PD after the delay (the region split, merged or moved).
    Reload(Duration),
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
            stores: Mutex::default(),
            range_slots,
            before_run: Mutex::new(Some(Vec::new())),
        }
    }

    /// Starts a new subscription: loads and locks the regions of its whole span (once
    /// `Client::run` has started: a subscription made before waits for it).
    pub(crate) fn start(self: &Arc<Self>, sub: SubRef) {
        if let Some(waiting) = lock(&self.before_run).as_mut() {
            waiting.push(sub);
            return;
        }
        let span = sub.state().lock.span().clone();
        self.spawn_range(sub, span, 0, Duration::ZERO);
    }

    /// `Client::run` started: starts the subscriptions made before it.
    pub(crate) fn release_waiting(self: &Arc<Self>) {
        let waiting = lock(&self.before_run).take().unwrap_or_default();
        for sub in waiting {
            if !sub.is_stopped() {
                self.start(sub);
            }
        }
    }

    /// The scheduler's loop: regions handed back by the workers.
    pub(crate) async fn run(self: Arc<Self>, mut finished: FinishedReceiver) {
        while let Some(Finished { owned, end }) = finished.recv().await {
            match end {
                RegionEnd::Retry(delay) => self.spawn_request(owned, delay),
                RegionEnd::AwaitQuota => {
                    let scheduler = Arc::clone(&self);
                    self.shared.spawn(async move {
                        if owned.sub.quota_room().await {
                            scheduler.spawn_request(owned, Duration::ZERO);
                        } else {
                            scheduler.unlock(owned, AfterUnlock::Release);
                        }
                    });
                }
                RegionEnd::Reload(delay) => self.unlock(owned, AfterUnlock::Reload(delay)),
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
        // So are those waiting in a store's queue.
        let queued: Vec<Owned> = {
            let mut stores = lock(&self.stores);
            let mut mine = Vec::new();
            for queue in stores.values_mut() {
                let (gone, kept) = std::mem::take(&mut queue.waiting)
                    .into_iter()
                    .partition(|(owned, _): &(Owned, RpcContext)| owned.sub.id == sub.id);
                queue.waiting = kept;
                mine.extend(gone.into_iter().map(|(owned, _)| owned));
                if let Some(refused) = &mut queue.refused {
                    let (gone, kept) = std::mem::take(&mut refused.parked)
                        .into_iter()
                        .partition(|owned: &Owned| owned.sub.id == sub.id);
                    refused.parked = kept;
                    mine.extend(gone);
                }
            }
            mine
        };
        for owned in queued {
            self.unlock(owned, AfterUnlock::Release);
        }
        self.forget_idle_stores();
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
            shared.metrics.forget_subscription(sub.id, &sub.name());
            // The cached regions of its span that no other subscription covers go too.
            let span = sub.state().lock.span().clone();
            let live: Vec<Span> = shared
                .registry
                .all()
                .iter()
                .map(|other| other.state().lock.span().clone())
                .collect();
            let forgotten = shared.source.forget_regions_in(&span, |region| {
                live.iter().any(|l| l.intersect(region).is_ok())
            });
            tracing::debug!(subscription = sub.id, forgotten, "cached regions forgotten");
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
            state.delivered = None;
            tracing::info!(subscription = sub.id, locks = state.locks, "subscription drained");
        });
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
                let Some(handle) = state.lock.handle(region_id) else {
                    // The lock just said the region holds the range: this is a bug.
                    tracing::error!(subscription = sub.id, region = region_id, "no lock handle");
                    self.shared.metrics.internal_errors.inc();
                    return;
                };
                let owned = Owned {
                    sub: Arc::clone(sub),
                    region: request.region,
                    span: request.span,
                    checkpoint_ts,
                    handle,
                };
                out.push(FollowUp::Request(owned, Duration::ZERO));
            }
            Ok(LockOutcome::Wait(ticket)) => {
                tracing::debug!(subscription = sub.id, region = region_id, "lock waits");
                state.parked.insert(ticket, request);
            }
            Ok(LockOutcome::Stale { retry }) => {
                tracing::debug!(subscription = sub.id, region = region_id, ?retry, "stale lock");
                out.extend(retry.into_iter().map(|span| FollowUp::Reload {
                    sub: Arc::clone(sub),
                    span,
                    attempt,
                    delay: Duration::ZERO,
                }));
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
                FollowUp::Reload { sub, span, attempt, delay } => {
                    self.spawn_range(sub, span, attempt, delay);
                }
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

    fn spawn_range(self: &Arc<Self>, sub: SubRef, span: Span, attempt: u32, delay: Duration) {
        self.shared.spawn(Arc::clone(self).load_range(sub, span, attempt, delay));
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
            if let AfterUnlock::Reload(delay) = then
                && !sub.is_stopped()
            {
                out.push(FollowUp::Reload {
                    sub: Arc::clone(&sub),
                    span: owned.span,
                    attempt: 0,
                    delay,
                });
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
    async fn back_off(&self, owned: &Owned) -> bool {
        let delay = self.shared.retry_delay(owned.sub.id, owned.region.id, Duration::ZERO);
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

    /// A range task: after `attempt` backoffs of [`RELOAD_BACKOFF`] and at least `delay`, loads
    /// the regions of `span` from PD in batches, and locks each region's part of it. Holes
    /// (regions PD does not know yet) are reloaded after a backoff.
    async fn load_range(self: Arc<Self>, sub: SubRef, span: Span, attempt: u32, delay: Duration) {
        let delay = delay.max(backoff::delay(&RELOAD_BACKOFF, attempt, sub.id ^ span_salt(&span)));
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
                out.push(FollowUp::Reload {
                    sub: Arc::clone(&sub),
                    span: hole,
                    attempt: attempt + 1,
                    delay: Duration::ZERO,
                });
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

    /// Forgets the stores no region uses (a free window, nothing waiting, not refused), so the
    /// map holds only the stores of live work.
    fn forget_idle_stores(&self) {
        let window = self.shared.config.initial_scan_window;
        lock(&self.stores).retain(|_, queue| {
            queue.admitting
                || !queue.waiting.is_empty()
                || queue.refused.is_some()
                || queue.window.available_permits() < window
        });
    }

    /// A new store queue, with an empty initial-scan window.
    fn new_queue(&self) -> StoreQueue {
        StoreQueue {
            window: Arc::new(Semaphore::new(self.shared.config.initial_scan_window)),
            waiting: VecDeque::new(),
            admitting: false,
            refused: None,
        }
    }

    /// Parks the region in its store's queue if the store's version (as PD reported it) is
    /// outside [`Config::store_versions`], else gives it back. A refused store is logged once
    /// per version; its parked regions are requested again once per [`STORE_RECHECK`], the store
    /// looked up in PD again first, so an upgrade is seen; when a store's version is admitted
    /// again, its parked regions go on at once.
    ///
    /// [`Config::store_versions`]: crate::Config::store_versions
    fn park_if_refused(
        self: &Arc<Self>,
        store_id: u64,
        version: &str,
        owned: Owned,
    ) -> Option<Owned> {
        let Some(supported) = &self.shared.config.store_versions else { return Some(owned) };
        let parsed = version.parse::<TikvVersion>();
        let mut stores = lock(&self.stores);
        if parsed.as_ref().is_ok_and(|v| supported.contains(v)) {
            let refused = stores.get_mut(&store_id).and_then(|queue| queue.refused.take());
            drop(stores);
            if let Some(refused) = refused {
                tracing::info!(
                    store = store_id,
                    version,
                    "store version supported: its regions go on"
                );
                for parked in refused.parked {
                    self.spawn_request(parked, Duration::ZERO);
                }
            }
            return Some(owned);
        }
        let queue = stores.entry(store_id).or_insert_with(|| self.new_queue());
        let refused = queue.refused.get_or_insert_with(|| RefusedStore {
            version: String::new(),
            parked: Vec::new(),
            rechecking: false,
        });
        if refused.version != version {
            refused.version = version.to_owned();
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
        refused.parked.push(owned);
        if !std::mem::replace(&mut refused.rechecking, true) {
            let scheduler = Arc::clone(self);
            self.shared.spawn(async move { scheduler.recheck_store(store_id).await });
        }
        None
    }

    /// A refused store's recheck task: once per [`STORE_RECHECK`], has the store looked up in PD
    /// again and requests its parked regions anew (they park again while it is still refused).
    /// Ends when nothing is parked.
    async fn recheck_store(self: Arc<Self>, store_id: u64) {
        loop {
            tokio::time::sleep(STORE_RECHECK).await;
            let parked = {
                let mut stores = lock(&self.stores);
                let Some(refused) = stores.get_mut(&store_id).and_then(|q| q.refused.as_mut())
                else {
                    return;
                };
                if refused.parked.is_empty() {
                    refused.rechecking = false;
                    return;
                }
                std::mem::take(&mut refused.parked)
            };
            self.shared.source.mark_store_stale(store_id);
            for owned in parked {
                self.spawn_request(owned, Duration::ZERO);
            }
        }
    }

    /// Passes a located region to its store: registered at once if the store's initial-scan
    /// window has a place and no region waits before it, else queued for the store's
    /// admission task.
    fn admit(self: &Arc<Self>, owned: Owned, ctx: RpcContext) {
        let store_id = ctx.peer.store_id;
        let permit = {
            let mut stores = lock(&self.stores);
            let queue = stores.entry(store_id).or_insert_with(|| self.new_queue());
            let permit = queue
                .waiting
                .is_empty()
                .then(|| Arc::clone(&queue.window).try_acquire_owned().ok())
                .flatten();
            match permit {
                Some(permit) => permit,
                None => {
                    queue.waiting.push_back((owned, ctx));
                    if !std::mem::replace(&mut queue.admitting, true) {
                        let scheduler = Arc::clone(self);
                        self.shared.spawn(async move { scheduler.run_admission(store_id).await });
                    }
                    return;
                }
            }
        };
        self.spawn_register(owned, ctx, permit);
    }

    /// A store's admission task: hands each place freed in the store's initial-scan window to
    /// the region waiting longest. Ends when none waits.
    async fn run_admission(self: Arc<Self>, store_id: u64) {
        let window = lock(&self.stores).get(&store_id).map(|queue| Arc::clone(&queue.window));
        let Some(window) = window else { return };
        loop {
            let Ok(permit) = Arc::clone(&window).acquire_owned().await else { return };
            let next = {
                let mut stores = lock(&self.stores);
                let Some(queue) = stores.get_mut(&store_id) else { return };
                let next = queue.waiting.pop_front();
                if next.is_none() {
                    queue.admitting = false;
                }
                next
            };
            match next {
                Some((owned, ctx)) => self.spawn_register(owned, ctx, permit),
                None => return,
            }
        }
    }

    fn spawn_register(
        self: &Arc<Self>,
        owned: Owned,
        ctx: RpcContext,
        permit: OwnedSemaphorePermit,
    ) {
        let scheduler = Arc::clone(self);
        self.shared.spawn(async move { scheduler.register(owned, ctx, permit).await });
    }

    /// A region request: finds the leader and passes the region to its store (see the module
    /// docs: nothing here waits for one store).
    async fn request_region(self: Arc<Self>, owned: Owned) {
        let sub = Arc::clone(&owned.sub);
        if sub.is_stopped() {
            self.unlock(owned, AfterUnlock::Release);
            return;
        }
        let ctx = loop {
            match self.shared.source.rpc_context(owned.region).await {
                Ok(Some(ctx)) => break ctx,
                Ok(None) => {
                    // The region version is gone from the cache (or has no usable peer):
                    // re-divide its range.
                    self.shared
                        .metrics
                        .region_errors
                        .with_label_values(&["RPCCtxUnavailable"])
                        .inc();
                    let delay = self.shared.retry_delay(sub.id, owned.region.id, Duration::ZERO);
                    self.unlock(owned, AfterUnlock::Reload(delay));
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
                        // PD is unavailable for every store alike: wait here.
                        if !self.back_off(&owned).await {
                            self.unlock(owned, AfterUnlock::Release);
                            return;
                        }
                    } else {
                        let delay =
                            self.shared.retry_delay(sub.id, owned.region.id, Duration::ZERO);
                        self.shared.source.invalidate(owned.region);
                        self.unlock(owned, AfterUnlock::Reload(delay));
                        return;
                    }
                }
            }
        };
        let Some(owned) = self.park_if_refused(ctx.peer.store_id, &ctx.store_version, owned) else {
            // Not a store to talk to yet: the range stays locked, the region parked.
            self.shared.metrics.region_errors.with_label_values(&["StoreVersion"]).inc();
            return;
        };
        self.admit(owned, ctx);
    }

    /// Hands a region with its place in the store's window to its worker and registers it on a
    /// stream of the store (which may wait for a connection: this runs on a task of its own).
    async fn register(
        self: Arc<Self>,
        owned: Owned,
        ctx: RpcContext,
        permit: OwnedSemaphorePermit,
    ) {
        let sub = Arc::clone(&owned.sub);
        if sub.is_stopped() {
            drop(permit);
            self.unlock(owned, AfterUnlock::Release);
            return;
        }
        let store_id = ctx.peer.store_id;
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
        let pending = WorkerMsg::Pending { owned, seq, ctx, permit };
        if self.workers.send_to(worker, pending).await.is_err() {
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
