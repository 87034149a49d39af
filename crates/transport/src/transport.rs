//! [`Transport`]: stores by id, stream slots per store, registration and deregistration.
//!
//! Each store has `streams_per_store` slots, picked round robin per registration. A slot holds at
//! most one multiplexed session (an `EventFeedV2` call carrying every subscription) and, for
//! stores that only serve `EventFeed`, one session per subscription (reference §5.6). Sessions
//! are opened lazily by the first registration that needs one, after the slot's reconnect
//! backoff, on a connection leased from the store's [`Pool`].
//!
//! Requests reach a call through an unbounded queue, so registering never waits for a store; the
//! queue holds small messages, no more than the caller's pending registrations. Responses are the
//! bounded side: see [`Events`].

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tonic::transport::{ClientTlsConfig, Endpoint};

use kvfeed_base::{Backoff, Jitter, get_mut, lock};

use crate::budget::{Charged, EventBudget, EventCharge, EventSender};
use crate::call::SessionTask;
use crate::config::TransportConfig;
use crate::demux::Route;
use crate::error::{StreamError, TransportError, chain};
use crate::event::StreamEvent;
use crate::pool::{Mode, Pool};
use crate::request::{RegisterRequest, RequestTemplate, StoreTarget, WireRequest};
use crate::session::{CloseRequest, End, Insert, Session};

/// A handle on kvfeed's CDC streams to TiKV stores. Cheap to clone; the streams close when the
/// last clone is dropped.
///
/// # Contract
///
/// - [`register`](Self::register) returning `Ok` puts the region on a stream; from then on its
///   registration ends exactly once, visible on [`Events`] as either a
///   [`RegionEvent::Error`](crate::RegionEvent::Error) (TiKV ended it; except
///   `DuplicateRequest`, which leaves the original registration alive) or a
///   [`StreamEvent::RegionFailed`] (the stream failed), unless the caller deregisters it first.
///   An `Err` means nothing was registered and nothing will be reported.
/// - Neither `register` nor `deregister` ever waits for the event channel, so the consumer of
///   [`Events`] may call them. `register` may wait for a dial and probe (bounded by
///   `connect_timeout`) and for the reconnect backoff of the slot it picked.
#[derive(Clone, Debug)]
pub struct Transport {
    inner: Arc<Inner>,
}

/// The receiving end of the transport's bounded event channel.
///
/// When it is full, the streams stop reading and HTTP/2 flow control slows the stores down:
/// memory stays bounded by the channel capacity plus the HTTP/2 windows.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Charged>,
    /// Given back each event's charge as it is taken.
    budget: Arc<EventBudget>,
}

/// A snapshot of one store's connections and streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// The store id.
    pub store_id: u64,
    /// Its current address.
    pub address: String,
    /// Pooled HTTP/2 connections.
    pub connections: usize,
    /// Running `EventFeedV2` calls.
    pub multiplexed_streams: usize,
    /// Running `EventFeed` calls (one per subscription and slot).
    pub per_subscription_streams: usize,
    /// Regions registered on those calls.
    pub regions: usize,
}

#[derive(Debug)]
struct Inner {
    config: TransportConfig,
    template: RequestTemplate,
    tls: Option<ClientTlsConfig>,
    events: EventSender,
    /// Stores by id. Invariant: no two stores share an address.
    stores: Mutex<HashMap<u64, Arc<Store>>>,
    seeds: AtomicU64,
}

#[derive(Debug)]
struct Store {
    id: u64,
    address: String,
    pool: Pool,
    /// Invariant: not empty.
    slots: Box<[Slot]>,
    next_slot: AtomicUsize,
}

#[derive(Debug)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// `Some` while a registration dials and probes a connection for this slot, which it does
    /// without holding `state` (so deregistrations, stats and store removal never wait for a
    /// dial); fired and cleared when that registration is done or dropped. Other registrations
    /// needing a session wait for it and look again, instead of dialling too.
    connecting: Mutex<Option<Arc<Notify>>>,
}

/// Marks a slot connecting; clears the mark and wakes the waiters when dropped.
struct Connecting<'a> {
    slot: &'a Slot,
    notify: Arc<Notify>,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.slot.lock_connecting().take();
        self.notify.notify_waiters();
    }
}

impl Slot {
    fn lock_connecting(&self) -> MutexGuard<'_, Option<Arc<Notify>>> {
        lock(&self.connecting)
    }

    /// Marks the slot connecting (the caller holds `state`, and saw it not connecting).
    fn start_connecting(&self) -> Connecting<'_> {
        let notify = Arc::new(Notify::new());
        *self.lock_connecting() = Some(Arc::clone(&notify));
        Connecting { slot: self, notify }
    }
}

#[derive(Debug)]
struct SlotState {
    multiplexed: Option<Handle>,
    per_subscription: HashMap<u64, Handle>,
    /// Consecutive failures, for the reconnect backoff.
    failures: u32,
    /// No new session before this instant.
    retry_at: Option<Instant>,
    jitter: Jitter,
    /// Set by `close_all`: the store is gone, so a session opened by a dial that was under way
    /// is failed with this cause at once instead of being kept.
    closed: Option<StreamError>,
}

/// The slot's end of a session.
#[derive(Debug)]
struct Handle {
    session: Arc<Session>,
    requests: mpsc::UnboundedSender<WireRequest>,
}

impl Transport {
    /// A transport for the cluster `cluster_id` (sent in every request header), and the receiver
    /// of its events. Fails only when a TLS file cannot be read.
    pub fn new(config: TransportConfig, cluster_id: u64) -> Result<(Self, Events), TransportError> {
        let tls = config.tls.as_ref().map(kvfeed_base::tonic_tls).transpose()?;
        let (events, receiver) = mpsc::channel(config.event_channel_capacity.max(1));
        let budget = Arc::new(EventBudget::new(config.event_channel_bytes));
        let events = EventSender::new(events, Arc::clone(&budget));
        let template = RequestTemplate::new(cluster_id, config.filter_loop);
        let inner = Inner {
            config,
            template,
            tls,
            events,
            stores: Mutex::default(),
            seeds: AtomicU64::new(cluster_id),
        };
        Ok((Self { inner: Arc::new(inner) }, Events { receiver, budget }))
    }

    /// Registers a region on one of the store's streams, picked round robin (see the type's
    /// contract).
    ///
    /// Do not register a pair that is still registered on the store: TiKV answers a second
    /// registration on the same stream with `DuplicateRequest` (the first stays alive), but on
    /// another stream of the store it becomes a second, independent registration. Deregister the
    /// pair first.
    ///
    /// A store seen for the first time, or again under a new address, gets fresh connections; a
    /// store id that moved to another address, or an address taken over by another store id,
    /// fails the old store's streams with [`StreamError::AddressChanged`].
    pub async fn register(
        &self,
        target: &StoreTarget,
        request: RegisterRequest,
    ) -> Result<(), TransportError> {
        if request.region_id == 0 {
            return Err(TransportError::InvalidRequest("region id 0 cannot be registered"));
        }
        let store = self.inner.store(target).await?;
        let mut slot = store.next_slot();
        // Slots tried whose `EventFeed` call still streams the pair's old registration.
        let mut zombie_slots = 0;
        let wire = WireRequest::register(&self.inner.template, &request);
        let (request_id, region_id) = (request.request_id, request.region_id);
        loop {
            let mut state = slot.state.lock().await;
            state.prune(&self.inner.config.backoff);
            if let Some(handle) = state.session_for(request_id) {
                match handle.session.insert(request_id, region_id, self.inner.config.drain_timeout)
                {
                    // Registering a live pair again is TiKV's to answer (DuplicateRequest).
                    Insert::Added | Insert::AlreadyThere => {
                        handle.send(wire);
                        return Ok(());
                    }
                    // Ended since the prune: prune again.
                    Insert::Ended => continue,
                    // An `EventFeed` call still streams the pair's old registration. Another
                    // slot's call, if the store has one without the old registration,
                    // takes the region without disturbing this call's other regions; only when
                    // every slot streams it is the call closed (its other regions are reported
                    // failed, once, as closed locally) and another opened.
                    Insert::Zombie => {
                        zombie_slots += 1;
                        if zombie_slots < store.slots.len() {
                            drop(state);
                            slot = store.next_slot();
                            continue;
                        }
                        handle.session.request_close(CloseRequest::Fail(StreamError::Replaced));
                        continue;
                    }
                }
            }
            // Another registration is dialling for this slot: wait for it, then look again.
            let dialling = slot.lock_connecting().clone();
            if let Some(notify) = dialling {
                // Registered for `notify_waiters` from its creation on; if the dial ended before
                // that, the mark is gone (or is another dial's) and there is nothing to wait for.
                let done = notify.notified();
                let still = slot
                    .lock_connecting()
                    .as_ref()
                    .is_some_and(|current| Arc::ptr_eq(current, &notify));
                drop(state);
                if still {
                    done.await;
                }
                continue;
            }
            if let Some(at) = state.retry_at
                && Instant::now() < at
            {
                drop(state);
                tokio::time::sleep_until(at).await;
                continue;
            }
            // Dial and probe without the slot's lock.
            let connecting = slot.start_connecting();
            drop(state);
            let acquired = store.pool.acquire().await;
            let mut state = slot.state.lock().await;
            let lease = match acquired {
                Ok(lease) => lease,
                Err(error) => {
                    state.failures = state.failures.saturating_add(1);
                    let delay = self.inner.config.backoff.delay(state.failures, &state.jitter);
                    state.retry_at = Some(Instant::now() + delay);
                    return Err(error);
                }
            };
            let mode = lease.mode();
            let session = Session::new(mode, (request_id, region_id));
            let (requests, receiver) = mpsc::unbounded_channel();
            let handle = Handle { session: Arc::clone(&session), requests };
            handle.send(wire);
            let owner = (mode == Mode::PerSubscription).then_some(request_id);
            let task = SessionTask {
                session,
                lease,
                requests: receiver,
                events: self.inner.events.clone(),
                route: Route { store_id: store.id, owner },
                idle_timeout: self.inner.config.idle_timeout,
                max_decoding_message_size: self.inner.config.max_decoding_message_size,
            };
            tokio::spawn(task.run());
            if let Some(cause) = state.closed.clone() {
                // The store was removed while dialling: the region is reported failed.
                handle.session.request_close(CloseRequest::Fail(cause));
                drop(connecting);
                return Ok(());
            }
            match mode {
                Mode::Multiplexed => state.multiplexed = Some(handle),
                Mode::PerSubscription => {
                    state.per_subscription.insert(request_id, handle);
                }
            }
            drop(connecting);
            return Ok(());
        }
    }

    /// Deregisters one region (`Some`) or every region of a subscription (`None`) on a store.
    /// For one region, a [`StreamEvent::Deregistered`] marker then follows every event of its
    /// old registrations on the channel (sent even if the region was not registered).
    ///
    /// The regions are forgotten at once: no [`StreamEvent::RegionFailed`] is reported for them
    /// afterwards, and no event of their old registrations reaches [`Events`]. On multiplexed
    /// streams a `Deregister` (with header; region id 0 for the whole subscription) goes to TiKV,
    /// which ends each removed registration with exactly one error event (its
    /// [`RegionError::RegionNotFound`](crate::RegionError::RegionNotFound) answer, or an error
    /// already in flight); until then the region's events are dropped, and that error is
    /// swallowed, so the region may be registered again on the same stream at once.
    /// On `EventFeed` streams a whole subscription is deregistered by closing its call; a single
    /// region is only forgotten locally, because a TiKV without `EventFeedV2` reads a
    /// `Deregister` as a Register, so TiKV keeps streaming it until the call closes (its events
    /// are dropped). Registering such a region again closes that call, reporting its other
    /// regions [`StreamEvent::RegionFailed`] with [`StreamError::Replaced`] (once each), and opens
    /// a new call: on the old call TiKV would answer `DuplicateRequest` and keep the old
    /// registration.
    pub async fn deregister(&self, store_id: u64, request_id: u64, region_id: Option<u64>) {
        self.deregister_quietly(store_id, request_id, region_id).await;
        if let Some(region_id) = region_id {
            // Ordered after every admitted event of the old registrations (see
            // `StreamEvent::Deregistered`); fails only when nobody listens.
            let marker = StreamEvent::Deregistered { store_id, request_id, region_id };
            let _ = self.inner.events.send(marker).await;
        }
    }

    async fn deregister_quietly(&self, store_id: u64, request_id: u64, region_id: Option<u64>) {
        let Some(store) = self.inner.lock_stores().get(&store_id).cloned() else { return };
        for slot in &store.slots {
            let mut state = slot.state.lock().await;
            state.prune(&self.inner.config.backoff);
            if let Some(handle) = &state.multiplexed {
                // Removed pairs drain: TiKV's answer (or an error already in flight) ends the old
                // registration, and a re-registration on this stream is not mistaken for it.
                if handle.session.deregister(request_id, region_id) > 0 {
                    handle.send(WireRequest::deregister(
                        &self.inner.template,
                        request_id,
                        region_id,
                    ));
                }
            }
            match region_id {
                Some(region) => {
                    if let Some(handle) = state.per_subscription.get(&request_id) {
                        handle.session.forget_streaming(request_id, region);
                    }
                }
                None => {
                    if let Some(handle) = state.per_subscription.remove(&request_id) {
                        handle.session.remove_request(request_id);
                        handle.session.request_close(CloseRequest::Quiet);
                    }
                }
            }
        }
    }

    /// Deregisters a subscription on every store (see [`deregister`](Self::deregister)).
    pub async fn deregister_everywhere(&self, request_id: u64) {
        let ids: Vec<u64> = self.inner.lock_stores().keys().copied().collect();
        for store_id in ids {
            self.deregister(store_id, request_id, None).await;
        }
    }

    /// Forgets a store that left the cluster: its streams fail (each region reported with
    /// [`StreamError::StoreRemoved`]) and its connections close.
    pub async fn remove_store(&self, store_id: u64) {
        let removed = self.inner.lock_stores().remove(&store_id);
        if let Some(store) = removed {
            store.close(StreamError::StoreRemoved).await;
        }
    }

    /// Forgets every store `keep` rejects (see [`remove_store`](Self::remove_store)).
    pub async fn retain_stores(&self, mut keep: impl FnMut(u64) -> bool) {
        let removed: Vec<Arc<Store>> = {
            let mut stores = self.inner.lock_stores();
            let ids: Vec<u64> = stores.keys().copied().filter(|id| !keep(*id)).collect();
            ids.iter().filter_map(|id| stores.remove(id)).collect()
        };
        for store in removed {
            store.close(StreamError::StoreRemoved).await;
        }
    }

    /// Forgets the stores nothing uses any more, so the map holds only stores with work: no
    /// live stream on any slot (streams without regions close after `idle_timeout`), no dial or
    /// reconnect backoff under way, and no caller holding the store (a registration or a unary
    /// call in progress). Their connections close; a store asked for again is dialled anew.
    /// Returns how many were forgotten.
    pub fn forget_idle_stores(&self) -> usize {
        let now = Instant::now();
        let mut stores = self.inner.lock_stores();
        let idle: Vec<u64> = stores
            .iter()
            .filter(|(_, store)| Arc::strong_count(store) == 1 && store.is_idle(now))
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            if let Some(store) = stores.remove(id) {
                store.pool.retire_all();
            }
        }
        idle.len()
    }

    /// The ids of the known stores, ascending.
    pub fn stores(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.inner.lock_stores().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Connections, streams and regions of a store, if it is known.
    pub async fn store_stats(&self, store_id: u64) -> Option<StoreStats> {
        let store = self.inner.lock_stores().get(&store_id).cloned()?;
        let mut stats = StoreStats {
            store_id,
            address: store.address.clone(),
            connections: store.pool.connections(),
            multiplexed_streams: 0,
            per_subscription_streams: 0,
            regions: 0,
        };
        for slot in &store.slots {
            let state = slot.state.lock().await;
            for handle in state.multiplexed.iter().chain(state.per_subscription.values()) {
                if handle.session.end().is_none() {
                    match handle.session.mode() {
                        Mode::Multiplexed => stats.multiplexed_streams += 1,
                        Mode::PerSubscription => stats.per_subscription_streams += 1,
                    }
                    stats.regions += handle.session.regions();
                }
            }
        }
        Some(stats)
    }
}

impl Transport {
    /// A channel of the store's pool for a unary call: the same pool, keyed by store id (and
    /// address-checked), as the CDC streams.
    pub(crate) async fn unary_channel(
        &self,
        target: &StoreTarget,
    ) -> Result<tonic::transport::Channel, TransportError> {
        Ok(self.inner.store(target).await?.pool.unary_channel())
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &TransportConfig {
        &self.inner.config
    }
}

impl Transport {
    /// Bytes the events waiting on the channel hold (their
    /// [`StreamEvent::footprint`]s, and those of events taken with
    /// [`Events::recv_charged`] whose charge is still held), at most
    /// [`TransportConfig::event_channel_bytes`].
    pub fn queued_bytes(&self) -> usize {
        self.inner.events.used()
    }
}

impl Events {
    /// The next event; `None` once the transport and all its streams are gone. Its charge to
    /// the byte budget is given back at once.
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        let (event, charge) = self.receiver.recv().await?;
        self.budget.give_back(charge);
        Some(event)
    }

    /// The next event with its charge to the byte budget, given back when the charge is
    /// dropped: hold it while the event is processed, and the budget bounds that work too.
    pub async fn recv_charged(&mut self) -> Option<(StreamEvent, EventCharge)> {
        let (event, charge) = self.receiver.recv().await?;
        Some((event, EventCharge::new(Arc::clone(&self.budget), charge)))
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<StreamEvent> {
        let (event, charge) = self.receiver.try_recv().ok()?;
        self.budget.give_back(charge);
        Some(event)
    }

    /// The number of events waiting.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// Bytes the waiting events hold (their footprints, as the byte budget counts them).
    pub fn bytes(&self) -> usize {
        self.budget.used()
    }
}

impl Inner {
    fn lock_stores(&self) -> MutexGuard<'_, HashMap<u64, Arc<Store>>> {
        lock(&self.stores)
    }

    /// The store for a target, created (and conflicting stores evicted) as needed.
    async fn store(&self, target: &StoreTarget) -> Result<Arc<Store>, TransportError> {
        let (store, evicted) = {
            let mut stores = self.lock_stores();
            if let Some(store) = stores.get(&target.store_id)
                && store.address == target.address
            {
                return Ok(Arc::clone(store));
            }
            let seed = self.seeds.fetch_add(0x9E37_79B9, Ordering::Relaxed);
            let store = Arc::new(Store::new(target, &self.config, self.tls.as_ref(), seed)?);
            let mut evicted: Vec<Arc<Store>> =
                stores.insert(target.store_id, Arc::clone(&store)).into_iter().collect();
            let squatters: Vec<u64> = stores
                .iter()
                .filter(|(id, other)| **id != target.store_id && other.address == target.address)
                .map(|(id, _)| *id)
                .collect();
            evicted.extend(squatters.iter().filter_map(|id| stores.remove(id)));
            (store, evicted)
        };
        for old in evicted {
            tracing::info!(store_id = old.id, address = %old.address, "store address changed");
            old.close(StreamError::AddressChanged).await;
        }
        Ok(store)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let stores = get_mut(&mut self.stores);
        for store in stores.values() {
            store.pool.retire_all();
            for slot in &store.slots {
                // Nobody else can hold a slot lock: every handle on the transport is gone.
                if let Ok(mut state) = slot.state.try_lock() {
                    state.close_all(&StreamError::Shutdown);
                }
            }
        }
    }
}

impl Store {
    fn new(
        target: &StoreTarget,
        config: &TransportConfig,
        tls: Option<&ClientTlsConfig>,
        seed: u64,
    ) -> Result<Self, TransportError> {
        let invalid = |reason: String| TransportError::InvalidAddress {
            store_id: target.store_id,
            address: target.address.clone(),
            reason,
        };
        let uri = if target.address.contains("://") {
            target.address.clone()
        } else if tls.is_some() {
            format!("https://{}", target.address)
        } else {
            format!("http://{}", target.address)
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|error| invalid(chain(&error)))?
            .connect_timeout(config.connect_timeout)
            .initial_stream_window_size(config.stream_window)
            .initial_connection_window_size(config.connection_window)
            .tcp_nodelay(true);
        if let Some(keepalive) = config.keepalive {
            endpoint = endpoint
                .http2_keep_alive_interval(keepalive.interval)
                .keep_alive_timeout(keepalive.timeout)
                .keep_alive_while_idle(true);
        }
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|error| invalid(chain(&error)))?;
        }
        let pool = Pool::new(
            target.store_id,
            target.address.clone(),
            endpoint,
            config.connect_timeout,
            config.max_calls_per_connection,
        );
        let slots = (0..config.streams_per_store.max(1) as u64)
            .map(|index| Slot {
                state: tokio::sync::Mutex::new(SlotState {
                    multiplexed: None,
                    per_subscription: HashMap::new(),
                    failures: 0,
                    retry_at: None,
                    jitter: Jitter::new(seed ^ target.store_id.rotate_left(17) ^ index),
                    closed: None,
                }),
                connecting: Mutex::new(None),
            })
            .collect();
        Ok(Self {
            id: target.store_id,
            address: target.address.clone(),
            pool,
            slots,
            next_slot: AtomicUsize::new(0),
        })
    }

    /// The next slot, round robin.
    fn next_slot(&self) -> &Slot {
        let at = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        &self.slots[at]
    }

    /// Whether no slot has a live session, a dial under way or a reconnect backoff running (a
    /// slot busy right now counts as in use).
    fn is_idle(&self, now: Instant) -> bool {
        self.slots.iter().all(|slot| {
            if slot.lock_connecting().is_some() {
                return false;
            }
            let Ok(state) = slot.state.try_lock() else { return false };
            state.multiplexed.as_ref().is_none_or(Handle::is_done)
                && state.per_subscription.values().all(Handle::is_done)
                && state.retry_at.is_none_or(|at| at <= now)
        })
    }

    /// Fails every stream of the store with `cause` and lets its connections go.
    async fn close(&self, cause: StreamError) {
        self.pool.retire_all();
        for slot in &self.slots {
            slot.state.lock().await.close_all(&cause);
        }
    }
}

impl SlotState {
    /// The running session a registration of `request_id` should use.
    fn session_for(&self, request_id: u64) -> Option<&Handle> {
        self.multiplexed.as_ref().or_else(|| self.per_subscription.get(&request_id))
    }

    /// Drops ended sessions, turning failures into backoff.
    fn prune(&mut self, backoff: &Backoff) {
        let mut outcomes = Vec::new();
        if self.multiplexed.as_ref().is_some_and(Handle::is_done) {
            outcomes.extend(self.multiplexed.take().map(|handle| handle.session.end()));
        }
        self.per_subscription.retain(|_, handle| {
            let done = handle.is_done();
            if done {
                outcomes.push(handle.session.end());
            }
            !done
        });
        for end in outcomes {
            match end {
                Some(End::Failed { at, healthy }) => {
                    // A call that delivered data proves the store works: start over.
                    self.failures = if healthy { 1 } else { self.failures.saturating_add(1) };
                    let retry_at = at + backoff.delay(self.failures, &self.jitter);
                    self.retry_at = Some(self.retry_at.map_or(retry_at, |old| old.max(retry_at)));
                }
                Some(End::Closed) => {}
                // Asked to close, not ended yet: no backoff of its own.
                None => {}
            }
        }
    }

    /// Asks every session to fail with `cause` and forgets them.
    fn close_all(&mut self, cause: &StreamError) {
        self.closed.get_or_insert_with(|| cause.clone());
        for handle in
            self.multiplexed.take().into_iter().chain(self.per_subscription.drain().map(|(_, h)| h))
        {
            handle.session.request_close(CloseRequest::Fail(cause.clone()));
        }
    }
}

impl Handle {
    /// Whether the session ended or is ending.
    fn is_done(&self) -> bool {
        self.session.is_closing()
    }

    /// Queues a request; a closed request direction fails the session.
    fn send(&self, request: WireRequest) {
        if self.requests.send(request).is_err() {
            self.session.request_close(CloseRequest::Fail(StreamError::SendClosed));
        }
    }
}
