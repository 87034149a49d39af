//! What every stage of the client reads: the configuration, the connections (PD through the
//! region source, TiKV through the transport), the subscription registry, the memory quota, the
//! metrics, the clock, and the lock-resolution request queue. Imports no stage: the scheduler,
//! the workers, the resolver and the housekeeping each hold an `Arc<Shared>` and nothing of each
//! other.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use kvfeed_regioncache::PdRegionSource;
use kvfeed_transport::Transport;
use tokio::sync::{Notify, Semaphore, watch};

use crate::backoff;
use crate::clock::{PdClock, RESOLVED_TS_ALLOWANCE};
use crate::config::Config;
use crate::history::{FailureHistory, Failures};
use crate::metrics::Metrics;
use crate::prewrite_cache::PrewriteCache;
use crate::resolve_lock::{Admission, LockResolveQueue, ResolveTask};
use crate::subscription::{Delivery, SubRef, SubState};

/// Everything the client's stages share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) source: PdRegionSource,
    pub(crate) transport: Transport,
    pub(crate) cluster_id: u64,
    pub(crate) registry: Registry,
    /// The delivered-rows part of the memory quota: one permit per byte of delivered rows not
    /// yet read (`config::delivered_bytes`; the transport's queue and the prewrites have the
    /// rest).
    pub(crate) quota: Arc<Semaphore>,
    /// The permits `quota` started with.
    pub(crate) delivered_quota: usize,
    /// The bytes of one delivered batch (`config::batch_bytes`).
    pub(crate) batch_bytes: usize,
    /// Where the region matchers keep prewrites (`config::prewrite_bytes` of the quota in
    /// memory, the values past it on disk).
    pub(crate) prewrites: Arc<PrewriteCache>,
    pub(crate) metrics: Metrics,
    /// Regions whose locks are to be resolved; the resolver stage takes them.
    pub(crate) resolve_requests: ResolveRequests,
    /// Each region's recent failures: the backoff of its next attempt.
    history: Mutex<FailureHistory>,
    /// PD's clock, refreshed by its own task: nothing else waits for PD to read it.
    pub(crate) clock: PdClock,
    /// Stores that sent a resolved ts far ahead of PD's clock (each is logged once).
    stores_ahead: Mutex<hashbrown::HashSet<u64>>,
    /// Registration sequence numbers (tell a registration from a later one of the same region).
    seq: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Whether the service tasks were started (by `Client::run`).
    running: AtomicBool,
    /// The clock origin of `now()`.
    epoch: Instant,
    /// The runtime the client was built on: background work is spawned there, so a
    /// subscription dropped outside any runtime still unsubscribes.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        source: PdRegionSource,
        transport: Transport,
        cluster_id: u64,
    ) -> Self {
        let delivered = crate::config::delivered_bytes(config.memory_quota);
        let prewrites = PrewriteCache::new(
            crate::config::prewrite_bytes(config.memory_quota),
            config.spill_dir.clone(),
        );
        Self {
            quota: Arc::new(Semaphore::new(delivered)),
            prewrites: Arc::new(prewrites),
            delivered_quota: delivered,
            batch_bytes: crate::config::batch_bytes(&config),
            resolve_requests: ResolveRequests::new(&config),
            history: Mutex::default(),
            clock: PdClock::default(),
            stores_ahead: Mutex::default(),
            registry: Registry::default(),
            metrics: Metrics::new(),
            seq: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            running: AtomicBool::new(false),
            epoch: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
            config,
            source,
            transport,
            cluster_id,
        }
    }

    /// Starts background work on the client's runtime.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        drop(self.runtime.spawn(work));
    }

    /// Spawns `work` on the client's runtime, keeping its handle (to abort it).
    pub(crate) fn spawn_handle(
        &self,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.runtime.spawn(work)
    }

    /// Time since the client started, the clock of the sans-IO pieces.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// A fresh registration sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the service tasks run (workers take messages).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn mark_running(&self) {
        self.running.store(true, Ordering::Release);
    }

    /// Whether the client is shutting down (or shut down).
    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Asks the client to stop.
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once the client is asked to stop.
    pub(crate) async fn shutdown_requested(&self) {
        let mut signal = self.shutdown.subscribe();
        // The sender lives as long as `self`: this only ends when the flag is set.
        let _ = signal.wait_for(|down| *down).await;
    }

    /// Records a failed attempt of a region (`bad_row` if a row could not be interpreted) and
    /// returns its history with the delay before the next attempt: [`Config::region_backoff`]
    /// at the region's consecutive failures (reloads, re-registrations and completed scans do
    /// not reset them; only [`HEALTHY_AFTER`](crate::history::HEALTHY_AFTER) without a failure
    /// does), and at least `hint` (TiKV's own advice, from `ServerIsBusy`). The jitter is a pure
    /// function of the subscription, the region and the attempt: reproducible in tests.
    pub(crate) fn region_failed(
        &self,
        sub: u64,
        region: u64,
        bad_row: bool,
        hint: Duration,
    ) -> (Failures, Duration) {
        let failures = lock(&self.history).fail(self.now(), sub, region, bad_row);
        let salt = region ^ sub.rotate_left(32);
        let delay = backoff::delay(&self.config.region_backoff, failures.attempt, salt);
        (failures, delay.max(hint.min(self.config.region_backoff.max)))
    }

    /// [`Shared::region_failed`] for a failure that is not a bad row: the delay before the
    /// region's next attempt.
    pub(crate) fn retry_delay(&self, sub: u64, region: u64, hint: Duration) -> Duration {
        self.region_failed(sub, region, false, hint).1
    }

    /// Whether `ts` is further ahead of PD's clock than any store may report
    /// ([`RESOLVED_TS_ALLOWANCE`]); the first time a store does so, it is logged.
    pub(crate) fn resolved_ts_too_far_ahead(&self, store_id: u64, ts: u64) -> bool {
        if self.clock.admits_resolved_ts(ts) {
            return false;
        }
        let ceiling = self.clock.ceiling(RESOLVED_TS_ALLOWANCE);
        self.metrics.region_errors.with_label_values(&["ResolvedTsAhead"]).inc();
        if lock(&self.stores_ahead).insert(store_id) {
            tracing::warn!(
                store = store_id,
                ts,
                ceiling,
                "store sent a resolved ts far ahead of PD's clock: not applied, its regions are \
                 requested again (logged once per store)"
            );
        }
        true
    }

    /// Forgets the failure histories of regions healthy for a while and of subscriptions gone;
    /// returns how many regions have a recent failure.
    pub(crate) fn forget_healthy_regions(&self) -> usize {
        let live: hashbrown::HashSet<u64> = self.registry.all().iter().map(|sub| sub.id).collect();
        let mut history = lock(&self.history);
        history.forget_healthy(self.now(), |sub| live.contains(&sub));
        history.len()
    }

    /// Bytes held on the way: delivered rows not yet read, events in the transport's queue, and
    /// prewrites (with scan-time commits and rollbacks) in memory.
    pub(crate) fn buffered_bytes(&self) -> usize {
        let delivered = self.delivered_quota.saturating_sub(self.quota.available_permits());
        delivered + self.transport.queued_bytes() + self.prewrites.memory_bytes()
    }

    /// Publishes the subscription's resolved ts if its publisher says it is time.
    pub(crate) fn publish(&self, sub: &SubRef, state: &mut SubState) {
        if sub.is_stopped() {
            return;
        }
        let resolved = state.lock.resolved_ts();
        if let Some(ts) = state.publisher.poll(self.now(), resolved)
            && state.deliver(Delivery::Resolved(ts))
        {
            self.metrics.send_events.with_label_values(&["resolved"]).inc();
            // No region is read again from below `ts`: rows at or below it cannot come again.
            if let Some(delivered) = &mut state.delivered {
                delivered.forget_up_to(ts);
            }
        }
    }

    /// Raises the subscription's lock-resolution target and queues its lagging regions (those
    /// initialized with a resolved ts below the target, at most as many as the queue holds,
    /// found through the range lock's min tree: no walk over every region); returns how many
    /// were queued.
    pub(crate) fn resolve_lock(&self, sub: &SubRef, target_ts: u64) -> usize {
        let regions: Vec<u64> = {
            let mut state = sub.state();
            state.lock_target = state.lock_target.max(target_ts);
            state
                .lock
                .lagging(target_ts, self.config.lock_resolve_queue)
                .regions
                .into_iter()
                .filter(|region| region.initialized)
                .map(|region| region.region_id)
                .collect()
        };
        let now = self.now();
        regions
            .iter()
            .filter(|&&region| self.resolve_requests.request(now, region, target_ts))
            .count()
    }
}

/// The subscriptions by id.
#[derive(Debug)]
pub(crate) struct Registry {
    subs: Mutex<HashMap<u64, SubRef>>,
    next_id: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self { subs: Mutex::default(), next_id: AtomicU64::new(1) }
    }
}

impl Registry {
    /// A fresh subscription id (never 0).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn insert(&self, sub: SubRef) {
        lock(&self.subs).insert(sub.id, sub);
    }

    pub(crate) fn get(&self, id: u64) -> Option<SubRef> {
        lock(&self.subs).get(&id).cloned()
    }

    pub(crate) fn remove(&self, id: u64) {
        lock(&self.subs).remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.subs).len()
    }

    /// Every subscription now.
    pub(crate) fn all(&self) -> Vec<SubRef> {
        lock(&self.subs).values().cloned().collect()
    }

    /// Forgets every subscription; returns them.
    pub(crate) fn drain(&self) -> Vec<SubRef> {
        lock(&self.subs).drain().map(|(_, sub)| sub).collect()
    }
}

/// The lock-resolution requests: a bounded, de-duplicated [`LockResolveQueue`] with cooldowns,
/// fed by the workers, the housekeeping and `Client::resolve_lock`, drained by the resolver.
#[derive(Debug)]
pub(crate) struct ResolveRequests {
    queue: Mutex<LockResolveQueue>,
    wake: Notify,
    /// When each queued region was first requested (the `wait` duration metric).
    queued_at: Mutex<HashMap<u64, Instant>>,
}

impl ResolveRequests {
    fn new(config: &Config) -> Self {
        Self {
            queue: Mutex::new(LockResolveQueue::new(
                config.lock_resolve_queue,
                config.lock_resolve_cooldown,
            )),
            wake: Notify::new(),
            queued_at: Mutex::default(),
        }
    }

    /// Asks for the region's locks below `target_ts` to be resolved. Returns whether a task is
    /// queued for it now.
    pub(crate) fn request(&self, now: Duration, region_id: u64, target_ts: u64) -> bool {
        let admission = lock(&self.queue).request(now, region_id, target_ts);
        match admission {
            Admission::Queued => {
                lock(&self.queued_at).insert(region_id, Instant::now());
                self.wake.notify_one();
                true
            }
            Admission::Merged => true,
            Admission::CoolingDown | Admission::Full => false,
        }
    }

    /// The next task, waiting for one; with how long it was queued.
    pub(crate) async fn next(&self, now: impl Fn() -> Duration) -> (ResolveTask, Option<Duration>) {
        loop {
            let task = lock(&self.queue).next(now());
            if let Some(task) = task {
                let waited = lock(&self.queued_at).remove(&task.region_id).map(|at| at.elapsed());
                return (task, waited);
            }
            self.wake.notified().await;
        }
    }

    /// Forgets the cooldowns that expired.
    pub(crate) fn forget_old(&self, now: Duration) {
        lock(&self.queue).forget_old(now);
    }
}

/// Locks a mutex, ignoring poisoning (no critical section leaves its data inconsistent).
pub(crate) use kvfeed_base::lock;

/// Physical milliseconds of a TSO timestamp.
pub(crate) fn physical_ms(ts: u64) -> u64 {
    ts >> kvfeed_regioncache::LOGICAL_BITS
}
