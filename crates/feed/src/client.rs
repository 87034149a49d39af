//! The [`Client`]: connects to PD, owns the transport, the subscriptions and the service
//! tasks, and is the API users call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use kvfeed_regioncache::{PdClient, PdConfig, PdRegionSource};
use kvfeed_span::Span;
use kvfeed_transport::{Events, Transport, TransportConfig};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::publish::ResolvedPublisher;
use crate::resolver::LockResolver;
use crate::subscription::{Delivery, Sub, SubRef, Subscription, SubscriptionId};
use crate::worker::{self, WorkerMsg};

/// Capacity of each region worker's queue, in messages.
const WORKER_QUEUE: usize = 1024;

/// A change-data client of one TiKV cluster. Cheap to clone (all clones share one client).
///
/// Build it with [`Client::connect`], drive it with [`Client::run`] (a future that runs until
/// [`Client::shutdown`]), and [`subscribe`](Client::subscribe) spans.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster_id", &self.inner.cluster_id)
            .field("subscriptions", &self.inner.lock_subs().len())
            .finish_non_exhaustive()
    }
}

/// A snapshot of one subscription's progress, from [`Client::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// What [`Client::run`] takes to start the service tasks.
struct RunParts {
    workers: Vec<mpsc::Receiver<WorkerMsg>>,
    events: Events,
}

/// Everything the client's tasks share.
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) source: PdRegionSource,
    pub(crate) transport: Transport,
    pub(crate) cluster_id: u64,
    subs: Mutex<HashMap<u64, SubRef>>,
    next_id: AtomicU64,
    /// Region workers' queues; a region goes to `workers[seahash(id) % len]`.
    pub(crate) workers: Vec<mpsc::Sender<WorkerMsg>>,
    parts: Mutex<Option<RunParts>>,
    /// The memory quota: one permit per byte of delivered rows not yet read.
    pub(crate) quota: Arc<Semaphore>,
    /// Range tasks running at once.
    pub(crate) range_slots: Arc<Semaphore>,
    /// Regions waiting for a request task.
    pub(crate) backlog: Mutex<crate::schedule::Backlog>,
    /// Per-store initial-scan windows.
    admission: Mutex<HashMap<u64, Arc<Semaphore>>>,
    /// Stores refused for their version: what was logged, and when PD is asked again.
    pub(crate) refused_stores: Mutex<HashMap<u64, crate::schedule::RefusedStore>>,
    pub(crate) resolver: LockResolver,
    pub(crate) metrics: Metrics,
    /// Registration sequence numbers (tell a registration from a later one of the same region).
    pub(crate) seq: AtomicU64,
    shutdown: watch::Sender<bool>,
    running: AtomicBool,
    /// The clock origin of `now()`.
    epoch: Instant,
    /// The runtime the client was built on: background work is spawned there, so a
    /// [`Subscription`] dropped outside any runtime still unsubscribes.
    runtime: tokio::runtime::Handle,
}

impl Client {
    /// Connects to PD (discovering the leader and the cluster id) and prepares the client.
    /// Nothing is sent to TiKV until a subscription is made and [`run`](Self::run) is polled.
    /// Must be called within a tokio runtime (multi-threaded for parallel region workers);
    /// the client's background work runs on it.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        validate(&config)?;
        let mut pd_config = PdConfig::new(config.pd_endpoints.iter().cloned());
        pd_config.cluster_id = config.cluster_id;
        pd_config.timeout = config.timeout;
        pd_config.connect_timeout = config.timeout;
        if let Some(tls) = &config.tls {
            pd_config.tls = Some(pd_tls(tls)?);
        }
        let pd = PdClient::connect(pd_config).await?;
        let cluster_id = pd.cluster_id();
        let transport_config = TransportConfig {
            streams_per_store: config.streams_per_store,
            filter_loop: config.filter_loop,
            connect_timeout: config.timeout,
            tls: config.tls.as_ref().map(transport_tls),
            ..TransportConfig::default()
        };
        let (transport, events) = Transport::new(transport_config, cluster_id)
            .map_err(|error| Error::Config(error.to_string()))?;
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..config.worker_count).map(|_| mpsc::channel(WORKER_QUEUE)).unzip();
        let resolver = LockResolver::new(&config)?;
        let inner = Inner {
            source: PdRegionSource::new(pd),
            transport,
            cluster_id,
            subs: Mutex::default(),
            next_id: AtomicU64::new(1),
            workers: senders,
            parts: Mutex::new(Some(RunParts { workers: receivers, events })),
            quota: Arc::new(Semaphore::new(config.memory_quota)),
            range_slots: Arc::new(Semaphore::new(config.range_concurrency)),
            backlog: Mutex::default(),
            admission: Mutex::default(),
            refused_stores: Mutex::default(),
            resolver,
            metrics: Metrics::new(),
            seq: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            running: AtomicBool::new(false),
            epoch: Instant::now(),
            runtime: tokio::runtime::Handle::current(),
            config,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The cluster id (from PD), sent in every request.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// A fresh timestamp from PD's TSO (a start ts for [`subscribe`](Self::subscribe)).
    pub async fn current_ts(&self) -> Result<u64, Error> {
        Ok(self.inner.source.pd().get_ts().await?)
    }

    /// Runs the client's service tasks (region workers, the stream demultiplexer, resolved-ts
    /// publication, lock resolution, slow-region reports) until [`shutdown`](Self::shutdown).
    /// Every subscription still open then ends with [`Error::Shutdown`]. Dropping the future
    /// stops the tasks too. Fails with [`Error::AlreadyRunning`] if called twice.
    pub async fn run(&self) -> Result<(), Error> {
        let parts = lock(&self.inner.parts).take().ok_or(Error::AlreadyRunning)?;
        self.inner.running.store(true, Ordering::Release);
        // Whatever way `run` ends (shutdown, a failed task, its future dropped), the client
        // stops and every stream ends.
        let _guard = RunGuard(&self.inner);
        let mut tasks = JoinSet::new();
        for (index, queue) in parts.workers.into_iter().enumerate() {
            tasks.spawn(worker::run_worker(Arc::clone(&self.inner), index, queue));
        }
        tasks.spawn(worker::run_dispatcher(Arc::clone(&self.inner), parts.events));
        tasks.spawn(crate::housekeeping::run(Arc::clone(&self.inner)));
        tasks.spawn(LockResolver::run(Arc::clone(&self.inner)));
        let mut shutdown = self.inner.shutdown.subscribe();
        let failure = tokio::select! {
            _ = shutdown.wait_for(|down| *down) => None,
            Some(result) = tasks.join_next() => Some(match result {
                Err(error) if error.is_panic() => format!("a service task panicked: {error}"),
                _ => "a service task ended".to_owned(),
            }),
        };
        self.inner.shutdown.send_replace(true);
        tasks.shutdown().await;
        self.inner.close_all().await;
        match failure {
            None => Ok(()),
            Some(reason) => {
                tracing::error!(%reason, "kvfeed client stopped");
                Err(Error::Internal(reason))
            }
        }
    }

    /// Stops [`run`](Self::run); every open subscription ends with [`Error::Shutdown`].
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Subscribes `span` (memcomparable-encoded bounds) from `start_ts`: every row committed in
    /// the span after `start_ts` is delivered at least once, and the subscription's resolved ts
    /// is published as it advances above `start_ts`.
    pub fn subscribe(&self, span: Span, start_ts: u64) -> Result<Subscription, Error> {
        if *self.inner.shutdown.borrow() {
            return Err(Error::Shutdown);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        let publisher = ResolvedPublisher::new(start_ts, self.inner.config.advance_interval);
        let sub = Arc::new(Sub::new(id, span.clone(), start_ts, publisher, sender));
        self.inner.lock_subs().insert(id, Arc::clone(&sub));
        tracing::info!(subscription = id, ?span, start_ts, "subscribed");
        self.inner.spawn_range(sub, span, 0);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let on_drop = Box::new(move |id: SubscriptionId| {
            if let Some(inner) = weak.upgrade() {
                inner.unsubscribe(id.0);
            }
        });
        Ok(Subscription::new(SubscriptionId(id), receiver, on_drop))
    }

    /// Stops a subscription. Idempotent; an unknown id is ignored. Returns at once: the
    /// subscription's stream ends once every region is released and deregistered from TiKV.
    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.inner.unsubscribe(id.0);
    }

    /// Resolves the locks below `target_ts` in every initialized region of the subscription
    /// whose resolved ts is below it (in the background, at most once per region per
    /// cooldown). Returns how many regions were queued.
    pub fn resolve_lock(&self, id: SubscriptionId, target_ts: u64) -> Result<usize, Error> {
        let sub = self.inner.sub(id.0).ok_or(Error::UnknownSubscription(id))?;
        Ok(self.inner.resolve_lock(&sub, target_ts))
    }

    /// Regions currently held by the subscription (being requested, scanning or streaming);
    /// 0 for an unknown id.
    pub fn region_count(&self, id: SubscriptionId) -> usize {
        self.inner.sub(id.0).map_or(0, |sub| sub.state().lock.len())
    }

    /// The subscription's resolved ts right now (the minimum over its span), whether or not it
    /// was published yet; `None` for an unknown id.
    pub fn resolved_ts(&self, id: SubscriptionId) -> Option<u64> {
        self.inner.sub(id.0).map(|sub| sub.state().lock.resolved_ts())
    }

    /// A snapshot of the subscription's progress (`O(1)`); `None` for an unknown id.
    pub fn stats(&self, id: SubscriptionId) -> Option<SubscriptionStats> {
        let sub = self.inner.sub(id.0)?;
        let state = sub.state();
        Some(SubscriptionStats {
            regions: state.lock.len(),
            initialized: state.lock.initialized_len(),
            resolved_ts: state.lock.resolved_ts(),
            published_ts: state.publisher.published(),
        })
    }

    /// Bytes of delivered rows the subscribers have not read yet: at most
    /// [`Config::memory_quota`], beyond which region workers wait.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.config.memory_quota.saturating_sub(self.inner.quota.available_permits())
    }

    /// The client's Prometheus registry.
    pub fn metrics(&self) -> &prometheus::Registry {
        &self.inner.metrics.registry
    }

    /// The client's metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let families = self.inner.metrics.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
    }
}

fn validate(config: &Config) -> Result<(), Error> {
    let positive = [
        ("worker_count", config.worker_count),
        ("streams_per_store", config.streams_per_store),
        ("initial_scan_window", config.initial_scan_window),
        ("memory_quota", config.memory_quota),
        ("range_concurrency", config.range_concurrency),
        ("region_scan_limit", config.region_scan_limit),
        ("lock_resolve_queue", config.lock_resolve_queue),
    ];
    for (name, value) in positive {
        if value == 0 {
            return Err(Error::Config(format!("{name} must be at least 1")));
        }
    }
    if config.pd_endpoints.is_empty() {
        return Err(Error::Config("no PD endpoint".to_owned()));
    }
    if config.memory_quota > Semaphore::MAX_PERMITS {
        return Err(Error::Config("memory_quota is too large".to_owned()));
    }
    if config.advance_interval.is_zero() {
        return Err(Error::Config("advance_interval must be positive".to_owned()));
    }
    if let Some(versions) = &config.store_versions
        && versions.is_empty()
    {
        return Err(Error::Config(format!(
            "store_versions {}..{} admits no version",
            versions.start, versions.end
        )));
    }
    Ok(())
}

/// The shared TLS settings for PD (its files are read now, so that a bad file is a
/// configuration error here).
fn pd_tls(tls: &crate::config::TlsConfig) -> Result<kvfeed_base::TlsConfig, Error> {
    let tls = transport_tls(tls);
    tls.load().map_err(|error| Error::Config(error.to_string()))?;
    Ok(tls)
}

pub(crate) fn transport_tls(tls: &crate::config::TlsConfig) -> kvfeed_base::TlsConfig {
    kvfeed_base::TlsConfig {
        ca_file: tls.ca_file.clone(),
        client_identity: tls.identity.as_ref().map(|(cert, key)| kvfeed_base::ClientIdentity {
            cert_file: cert.clone(),
            key_file: key.clone(),
        }),
        domain_name: tls.domain_name.clone(),
    }
}

/// Locks a mutex, ignoring poisoning (no critical section leaves its data inconsistent).
pub(crate) use kvfeed_base::lock;

impl Inner {
    pub(crate) fn lock_subs(&self) -> MutexGuard<'_, HashMap<u64, SubRef>> {
        lock(&self.subs)
    }

    pub(crate) fn sub(&self, id: u64) -> Option<SubRef> {
        self.lock_subs().get(&id).cloned()
    }

    pub(crate) fn all_subs(&self) -> Vec<SubRef> {
        self.lock_subs().values().cloned().collect()
    }

    /// Starts background work on the client's runtime.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        drop(self.runtime.spawn(work));
    }

    /// Time since the client started, the clock of the sans-IO pieces.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The worker a region is pinned to.
    pub(crate) fn worker_of(&self, region_id: u64) -> usize {
        let hash = seahash::hash(&region_id.to_le_bytes());
        (hash % self.workers.len() as u64) as usize
    }

    /// The initial-scan window of a store.
    pub(crate) fn admission(&self, store_id: u64) -> Arc<Semaphore> {
        let mut windows = lock(&self.admission);
        let window = self.config.initial_scan_window;
        Arc::clone(windows.entry(store_id).or_insert_with(|| Arc::new(Semaphore::new(window))))
    }

    pub(crate) fn unsubscribe(self: &Arc<Self>, id: u64) {
        if let Some(sub) = self.sub(id) {
            self.stop_sub(&sub, None);
        }
    }

    /// Stops a subscription (once): reports `failure` to the subscriber if given, stops the
    /// range lock, and tells every worker to release the subscription's regions. The stream
    /// ends when the last region is released ([`Inner::finish_drain`]).
    pub(crate) fn stop_sub(self: &Arc<Self>, sub: &SubRef, failure: Option<Error>) {
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
        let waiting: std::collections::VecDeque<crate::schedule::Owned> = {
            let mut backlog = lock(&self.backlog);
            let (mine, others) = backlog
                .waiting
                .drain(..)
                .partition(|owned: &crate::schedule::Owned| owned.sub.id == sub.id);
            backlog.waiting = others;
            mine
        };
        for owned in waiting {
            self.unlock(owned, crate::schedule::AfterUnlock::Release);
        }
        if self.running.load(Ordering::Acquire) {
            let inner = Arc::clone(self);
            let id = sub.id;
            self.spawn(async move {
                for worker in &inner.workers {
                    let _ = worker.send(WorkerMsg::Stop { sub: id }).await;
                }
            });
        }
    }

    /// The subscription released its last region: deregister it from every stream, forget it,
    /// and end its stream.
    pub(crate) fn finish_drain(self: &Arc<Self>, sub: &SubRef) {
        let inner = Arc::clone(self);
        let sub = Arc::clone(sub);
        self.spawn(async move {
            inner.transport.deregister_everywhere(sub.id).await;
            inner.lock_subs().remove(&sub.id);
            inner.metrics.forget_subscription(sub.id);
            let mut state = sub.state();
            if state.locks != state.unlocks {
                tracing::error!(
                    subscription = sub.id,
                    locks = state.locks,
                    unlocks = state.unlocks,
                    "drained with locks and unlocks unpaired"
                );
                inner.metrics.internal_errors.inc();
            }
            state.sender = None;
            tracing::info!(subscription = sub.id, locks = state.locks, "subscription drained");
        });
    }

    /// Ends every subscription at shutdown and deregisters them from the stores.
    async fn close_all(&self) {
        for sub in self.end_all_streams() {
            self.transport.deregister_everywhere(sub.id).await;
        }
    }

    /// Ends every subscription's stream (with [`Error::Shutdown`] unless it was stopping
    /// already) and forgets them; returns them.
    fn end_all_streams(&self) -> Vec<SubRef> {
        let subs: Vec<SubRef> = self.lock_subs().drain().map(|(_, sub)| sub).collect();
        for sub in &subs {
            let first = sub.mark_stopped();
            let mut state = sub.state();
            if first {
                state.deliver(Delivery::Failed(Error::Shutdown));
                let _ = state.lock.stop();
            }
            state.sender = None;
            self.metrics.forget_subscription(sub.id);
        }
        subs
    }
}

/// Stops the client when [`Client::run`] ends, however it ends.
struct RunGuard<'a>(&'a Inner);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
        self.0.end_all_streams();
    }
}

impl Inner {
    /// Raises the subscription's lock-resolution target and queues its lagging regions.
    pub(crate) fn resolve_lock(&self, sub: &SubRef, target_ts: u64) -> usize {
        let regions: Vec<u64> = {
            let mut state = sub.state();
            state.lock_target = state.lock_target.max(target_ts);
            state
                .lock
                .locked()
                .filter(|range| range.initialized && range.resolved_ts < target_ts)
                .map(|range| range.region_id)
                .collect()
        };
        let now = self.now();
        regions.iter().filter(|&&region| self.resolver.request(now, region, target_ts)).count()
    }
}

/// Physical milliseconds of a TSO timestamp.
pub(crate) fn physical_ms(ts: u64) -> u64 {
    ts >> kvfeed_regioncache::LOGICAL_BITS
}
