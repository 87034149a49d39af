//! Region workers and the stream demultiplexer.
//!
//! The dispatcher reads the transport's events and hands each to the worker its region is
//! pinned to (`seahash(region id) % workers`); a resolved-ts batch is split into one batch per
//! worker. A worker owns the state of its regions ([`Entry`]: the [`Owned`] lock handle, the
//! row pipeline, the leader it was sent to, its initial-scan permit) and processes their events
//! in stream order: rows through [`RegionRows`] to the subscriber, resolved ts into the range
//! lock, errors into [`End`]s, and a region whose registration ended goes back to the scheduler
//! as a [`Finished`] message: workers never call into the scheduler.
//!
//! A worker also watches the incremental scans of its regions: one that has not ended
//! [`Config::region_stuck_timeout`](crate::Config::region_stuck_timeout) after its register call
//! returned is deregistered and requested again (a wedged store must not hold a region, or its
//! place in the store's initial-scan window, forever).
//!
//! A region enters its worker ([`WorkerMsg::Pending`]) before its registration is sent, so no
//! event can overtake it, and leaves only once the register call returned
//! ([`WorkerMsg::Registered`]): a registration can never land after its region was released.
//! A region the worker deregistered itself is handed back only after the transport's
//! [`WorkerMsg::Deregistered`] marker for it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use kvfeed_rangelock::RegionHandle;
use kvfeed_regioncache::{Peer as CachePeer, PeerRole, RpcContext};
use kvfeed_transport::{
    Events, RegionError, RegionEvent, Row, RowKind, StreamEvent, TransportError,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{ClusterPeer, Error};
use crate::event::RowEvent;
use crate::lifecycle::{Finished, FinishedSender, Owned, RegionEnd, WorkerMsg, Workers};
use crate::region::{RegionRows, RowError};
use crate::shared::Shared;
use crate::subscription::{Delivery, Held, QuotaFull, SubRef};

/// What happens to a region whose registration ended.
#[derive(Debug)]
enum End {
    /// Request the same region again after `delay` (its backoff, from its failure history),
    /// keeping its range locked.
    Retry {
        /// TiKV still serves the registration: deregister it first.
        deregister: bool,
        /// The store could not be reached: tell the region cache.
        send_failed: bool,
        delay: Duration,
    },
    /// Deregister, and request the same region again once its subscription's own quota has
    /// room, keeping its range locked.
    AwaitQuota,
    /// Unlock and re-divide the range through PD after `delay`.
    Reload { delay: Duration },
    /// Unlock: the subscription stopped.
    Release,
    /// Fail the subscription, and unlock.
    Fail(Box<Error>),
}

/// One region registration in its worker.
#[derive(Debug)]
///
/// Kept small (a subscription may have a million regions): the region version is the one in
/// `ctx`, its part of the span lives in `rows`, its checkpoint is `rows`' resolved ts, and the
/// subscription is its [`SubRegions`]'; [`Worker::finish`] puts the [`Owned`] back together.
struct Entry {
    rows: RegionRows,
    ctx: RpcContext,
    /// The region's range in the lock, from the lock to the unlock (`Owned::handle`).
    handle: RegionHandle,
    seq: u64,
    /// The register call returned.
    registered: bool,
    /// The registration ended before the register call returned: carried out on return.
    end: Option<End>,
    /// The place in the store's initial-scan window, until INITIALIZED.
    permit: Option<OwnedSemaphorePermit>,
    /// The lock knows the region finished its scan.
    marked_initialized: bool,
}

/// The regions of one subscription on one worker.
#[derive(Debug)]
struct SubRegions {
    sub: SubRef,
    /// Boxed: a map of inline entries would waste a third of its slots' size on average.
    regions: HashMap<u64, Box<Entry>>,
}

/// The demultiplexer: transport events to region workers.
pub(crate) async fn run_dispatcher(shared: Arc<Shared>, workers: Workers, mut events: Events) {
    let mut batches: Vec<Vec<u64>> = vec![Vec::new(); workers.len()];
    // Rows keep their charge to the quota until their worker is done with them; the small
    // events give theirs back at once.
    while let Some((event, charge)) = events.recv_charged().await {
        let sent = match event {
            StreamEvent::Region { store_id, request_id, region_id, event } => {
                let (sub, region) = (request_id, region_id);
                let message = WorkerMsg::Region { store_id, sub, region, event, charge };
                workers.send_for(region_id, message).await
            }
            StreamEvent::Resolved { store_id, request_id, regions, ts } => {
                shared.metrics.batch_resolved_size.observe(regions.len() as f64);
                for region in regions {
                    batches[workers.index_of(region)].push(region);
                }
                let mut sent = Ok(());
                for (index, batch) in batches.iter_mut().enumerate() {
                    if batch.is_empty() {
                        continue;
                    }
                    let regions = std::mem::take(batch);
                    let message = WorkerMsg::Resolved { store_id, sub: request_id, regions, ts };
                    sent = sent.and(workers.send_to(index, message).await);
                }
                sent
            }
            StreamEvent::RegionFailed { request_id, region_id, cause, .. } => {
                let message = WorkerMsg::Failed { sub: request_id, region: region_id, cause };
                workers.send_for(region_id, message).await
            }
            StreamEvent::Deregistered { request_id, region_id, .. } => {
                let message = WorkerMsg::Deregistered { sub: request_id, region: region_id };
                workers.send_for(region_id, message).await
            }
        };
        if sent.is_err() {
            return; // A worker stopped: the client is shutting down.
        }
    }
}

/// A region worker's loop.
pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    finished: FinishedSender,
    index: usize,
    mut queue: mpsc::Receiver<WorkerMsg>,
) {
    let mut worker = Worker {
        shared,
        finished,
        subs: HashMap::new(),
        retired: HashMap::new(),
        scans: VecDeque::new(),
        advanced: Vec::new(),
        rows: Vec::new(),
    };
    let work = async move {
        // Wakes the worker when the oldest scan it watches is due; re-armed when that changes.
        let alarm = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(alarm);
        let mut armed: Option<Instant> = None;
        loop {
            let due = worker.scans.front().map(|scan| scan.due);
            if due != armed {
                if let Some(at) = due {
                    alarm.as_mut().reset(at);
                }
                armed = due;
            }
            tokio::select! {
                message = queue.recv() => match message {
                    Some(message) => {
                        worker.handle(message).await;
                        // A queue that is never empty must not keep the alarm from its turn.
                        if armed.is_some_and(|at| at <= Instant::now()) {
                            armed = None;
                            worker.expire_scans(Instant::now());
                        }
                    }
                    None => return,
                },
                () = &mut alarm, if armed.is_some() => {
                    armed = None;
                    worker.expire_scans(Instant::now());
                }
            }
        }
    };
    work.instrument(tracing::debug_span!("region_worker", index)).await;
}

struct Worker {
    shared: Arc<Shared>,
    /// Where finished regions go: back to the scheduler.
    finished: FinishedSender,
    subs: HashMap<u64, SubRegions>,
    /// Regions this worker deregistered to request again: held until the transport's
    /// [`WorkerMsg::Deregistered`] marker shows that no event of the old registration is still
    /// on its way (otherwise such an event could be taken for the new registration's), then
    /// requested after their backoff.
    retired: HashMap<(u64, u64), (Owned, RegionEnd)>,
    /// The incremental scans being watched, in registration order (the timeout is the same for
    /// all, so the oldest is first). An entry whose region finished its scan, or left, or was
    /// registered again since, is skipped when it comes due.
    scans: VecDeque<WatchedScan>,
    /// Reused buffer of the regions a resolved-ts batch advanced.
    advanced: Vec<(u64, RegionHandle)>,
    /// Reused buffer of rows to deliver.
    rows: Vec<RowEvent>,
}

/// A registration whose incremental scan must end by `due`.
#[derive(Debug)]
struct WatchedScan {
    due: Instant,
    sub: u64,
    region: u64,
    seq: u64,
}

impl Worker {
    async fn handle(&mut self, message: WorkerMsg) {
        match message {
            WorkerMsg::Pending { owned, seq, ctx, permit } => {
                self.on_pending(owned, seq, ctx, permit)
            }
            WorkerMsg::Registered { sub, region, seq, result } => {
                self.on_registered(sub, region, seq, result);
            }
            WorkerMsg::Region { store_id, sub, region, event, charge } => {
                self.on_region_event(store_id, sub, region, event).await;
                drop(charge);
            }
            WorkerMsg::Resolved { store_id, sub, regions, ts } => {
                self.on_resolved(store_id, sub, &regions, ts);
            }
            WorkerMsg::Failed { sub, region, cause } => {
                tracing::debug!(subscription = sub, region, %cause, "stream failed");
                // A stream this side closed (replaced, re-addressed, removed, shut down) says
                // nothing of the store: no failure counted, no peer rotated, at once again.
                let local = cause.is_local();
                let (kind, delay) = if local {
                    ("StreamClosedLocally", Duration::ZERO)
                } else {
                    ("SendRequestToStore", self.shared.retry_delay(sub, region, Duration::ZERO))
                };
                self.shared.metrics.region_errors.with_label_values(&[kind]).inc();
                let end = End::Retry { deregister: false, send_failed: !local, delay };
                self.end(sub, region, end);
            }
            WorkerMsg::Deregistered { sub, region } => {
                if let Some((owned, end)) = self.retired.remove(&(sub, region)) {
                    self.hand_back(owned, end);
                }
            }
            WorkerMsg::Stop { sub } => {
                let regions: Vec<u64> = match self.subs.get(&sub) {
                    Some(entries) => entries.regions.keys().copied().collect(),
                    None => return,
                };
                for region in regions {
                    self.end(sub, region, End::Release);
                }
            }
        }
    }

    fn on_pending(
        &mut self,
        owned: Owned,
        seq: u64,
        ctx: RpcContext,
        permit: OwnedSemaphorePermit,
    ) {
        let Owned { sub, region, span, checkpoint_ts, handle } = owned;
        debug_assert_eq!(region, ctx.region, "the context names the locked region version");
        // A region requested again keeps its range locked: its new scan has not ended, and the
        // lock must say so (stats, lock resolution).
        sub.state().lock.mark_uninitialized(region.id);
        let rows = RegionRows::new(span, sub.start_ts, checkpoint_ts);
        // A stop processed before this region arrived does not come again.
        let end = sub.is_stopped().then_some(End::Release);
        let region = region.id;
        let entry = Box::new(Entry {
            rows,
            ctx,
            handle,
            seq,
            registered: false,
            end,
            permit: Some(permit),
            marked_initialized: false,
        });
        let entries = self
            .subs
            .entry(sub.id)
            .or_insert_with(|| SubRegions { sub: Arc::clone(&sub), regions: HashMap::new() });
        if let Some(previous) = entries.regions.insert(region, entry) {
            // The range lock holds one range per region: two live registrations of one region
            // would be a bug. Keep the newer one; the older one's lock entry is the same.
            tracing::error!(
                subscription = sub.id,
                region,
                seq = previous.seq,
                "region registered twice"
            );
            self.shared.metrics.internal_errors.inc();
        }
    }

    fn on_registered(&mut self, sub: u64, region: u64, seq: u64, result: Option<TransportError>) {
        let Some(entry) =
            self.subs.get_mut(&sub).and_then(|entries| entries.regions.get_mut(&region))
        else {
            return;
        };
        if entry.seq != seq {
            return;
        }
        entry.registered = true;
        if let Some(timeout) = self.shared.config.region_stuck_timeout
            && result.is_none()
            && entry.end.is_none()
            && !entry.rows.is_initialized()
        {
            self.scans.push_back(WatchedScan { due: Instant::now() + timeout, sub, region, seq });
        }
        let mut end = entry.end.take();
        if let Some(error) = result {
            tracing::debug!(subscription = sub, region, %error, "registering failed");
            self.shared.metrics.region_errors.with_label_values(&["SendRequestToStore"]).inc();
            if end.is_none() {
                let delay = self.shared.retry_delay(sub, region, Duration::ZERO);
                end = Some(End::Retry { deregister: false, send_failed: true, delay });
            }
        }
        if let Some(end) = end {
            self.end(sub, region, end);
        }
    }

    /// Requests again every watched region whose scan is due and has not ended.
    fn expire_scans(&mut self, now: Instant) {
        while let Some(scan) = self.scans.front() {
            if scan.due > now {
                return;
            }
            let WatchedScan { sub, region, seq, .. } = self.scans.pop_front().expect("a front");
            let Some(entry) = self.subs.get(&sub).and_then(|entries| entries.regions.get(&region))
            else {
                continue;
            };
            if entry.seq != seq || entry.end.is_some() || entry.rows.is_initialized() {
                continue;
            }
            let store = entry.ctx.peer.store_id;
            tracing::warn!(
                subscription = sub,
                region,
                store,
                timeout = ?self.shared.config.region_stuck_timeout,
                "incremental scan stuck: requesting the region again"
            );
            self.shared.metrics.region_errors.with_label_values(&["StuckScan"]).inc();
            let delay = self.shared.retry_delay(sub, region, Duration::ZERO);
            self.end(sub, region, End::Retry { deregister: true, send_failed: false, delay });
        }
    }

    /// Ends a region's registration: at once if its register call returned, else on return.
    fn end(&mut self, sub: u64, region: u64, end: End) {
        let Some(entries) = self.subs.get_mut(&sub) else { return };
        let Some(entry) = entries.regions.get_mut(&region) else { return };
        if !entry.registered {
            if entry.end.is_none() {
                entry.end = Some(end);
            }
            return;
        }
        let entry = entries.regions.remove(&region).expect("present");
        let subscription = Arc::clone(&entries.sub);
        if entries.regions.is_empty() {
            self.subs.remove(&sub);
        }
        self.finish(subscription, *entry, end);
    }

    /// Hands a region that left its worker to the scheduler, deciding what comes next.
    fn finish(&mut self, sub: SubRef, entry: Entry, end: End) {
        let Entry { rows, ctx, handle, .. } = entry;
        let checkpoint_ts = rows.resolved_ts();
        let owned =
            Owned { sub, region: ctx.region, span: rows.into_span(), checkpoint_ts, handle };
        let shared = &self.shared;
        let (end, deregister) = match end {
            End::Retry { .. } | End::AwaitQuota if owned.sub.is_stopped() => {
                (RegionEnd::Release, false)
            }
            End::Retry { deregister, send_failed, delay } => {
                if send_failed {
                    shared.source.on_send_fail(&ctx);
                }
                (RegionEnd::Retry(delay), deregister)
            }
            End::AwaitQuota => (RegionEnd::AwaitQuota, true),
            End::Reload { delay } => (RegionEnd::Reload(delay), false),
            End::Release => (RegionEnd::Release, false),
            End::Fail(error) => (RegionEnd::Fail(error), false),
        };
        if deregister {
            // Requested again once the transport's marker comes through.
            let (sub, region) = (owned.sub.id, owned.region.id);
            self.retired.insert((sub, region), (owned, end));
            let task = Arc::clone(shared);
            shared.spawn(async move {
                task.transport.deregister(ctx.peer.store_id, sub, Some(region)).await;
            });
            return;
        }
        self.hand_back(owned, end);
    }

    /// Sends a region back to the scheduler. Fails only when the scheduler stopped (the client
    /// is shutting down, and every lock goes with the subscriptions).
    fn hand_back(&self, owned: Owned, end: RegionEnd) {
        let _ = self.finished.send(Finished { owned, end });
    }

    async fn on_region_event(&mut self, store_id: u64, sub: u64, region: u64, event: RegionEvent) {
        let Some(entries) = self.subs.get_mut(&sub) else {
            self.shared.metrics.pull_events.with_label_values(&["stale"]).inc();
            return;
        };
        let Some(entry) = entries.regions.get_mut(&region) else {
            self.shared.metrics.pull_events.with_label_values(&["stale"]).inc();
            return;
        };
        if entry.end.is_some() || entry.ctx.peer.store_id != store_id {
            return;
        }
        match event {
            RegionEvent::Rows(rows) => self.on_rows(sub, region, rows).await,
            RegionEvent::Error(error) => {
                let ctx = entry.ctx.clone();
                let end = self.classify(sub, &ctx, store_id, error);
                self.end(sub, region, end);
            }
            RegionEvent::ResolvedTs(ts) => self.on_resolved(store_id, sub, &[region], ts),
        }
    }

    /// Decides what a TiKV region error means for the region (reference §7, with backoff,
    /// per-region DuplicateRequest handling and typed failures).
    fn classify(&self, sub: u64, ctx: &RpcContext, store_id: u64, error: RegionError) -> End {
        let shared = &self.shared;
        let kind = match &error {
            RegionError::NotLeader { .. } => "NotLeader",
            RegionError::EpochNotMatch { .. } => "EpochNotMatch",
            RegionError::RegionNotFound => "RegionNotFound",
            RegionError::DuplicateRequest => "DuplicateRequest",
            RegionError::Compatibility { .. } => "Compatibility",
            RegionError::ClusterIdMismatch { .. } => "ClusterIdMismatch",
            RegionError::ServerIsBusy { .. } => "KvIsBusy",
            RegionError::Congested => "KvCongested",
            RegionError::Unknown => "Unknown",
        };
        shared.metrics.region_errors.with_label_values(&[kind]).inc();
        tracing::debug!(region = ctx.region.id, store = store_id, ?error, "region error");
        match error {
            RegionError::NotLeader { leader } => {
                let leader = leader.map(|peer| CachePeer {
                    id: peer.id,
                    store_id: peer.store_id,
                    role: PeerRole::Voter,
                    is_witness: false,
                });
                shared.source.on_not_leader(ctx.region, leader);
                let delay = self.shared.retry_delay(sub, ctx.region.id, Duration::ZERO);
                End::Retry { deregister: false, send_failed: false, delay }
            }
            RegionError::EpochNotMatch { .. } | RegionError::RegionNotFound => {
                // TiKV also reports its own memory-quota trouble as RegionNotFound (v8.1): the
                // reload backs off like any failure, growing while it repeats.
                shared.source.invalidate(ctx.region);
                End::Reload { delay: self.shared.retry_delay(sub, ctx.region.id, Duration::ZERO) }
            }
            RegionError::DuplicateRequest => {
                let delay = self.shared.retry_delay(sub, ctx.region.id, Duration::ZERO);
                End::Retry { deregister: true, send_failed: false, delay }
            }
            RegionError::Compatibility { required_version } => {
                End::Fail(Box::new(Error::Incompatible { store_id, required_version }))
            }
            RegionError::ClusterIdMismatch { current, request } => {
                End::Fail(Box::new(Error::ClusterIdMismatch {
                    peer: ClusterPeer::Store(store_id),
                    expected: request,
                    got: current,
                }))
            }
            RegionError::ServerIsBusy { backoff_ms, .. } => {
                // TiKV's hint is honoured (capped at the backoff's maximum).
                let delay =
                    self.shared.retry_delay(sub, ctx.region.id, Duration::from_millis(backoff_ms));
                End::Retry { deregister: false, send_failed: false, delay }
            }
            RegionError::Congested | RegionError::Unknown => {
                let delay = self.shared.retry_delay(sub, ctx.region.id, Duration::ZERO);
                End::Retry { deregister: false, send_failed: false, delay }
            }
        }
    }

    async fn on_rows(&mut self, sub: u64, region: u64, rows: Vec<Row>) {
        for row in &rows {
            self.shared.metrics.pull_events.with_label_values(&[kind_label(row.kind)]).inc();
        }
        let mut rows = rows.into_iter();
        // The frame's rows are delivered in batches of at most about `batch_bytes`: the values
        // of a huge transaction's COMMIT are read back from disk a batch at a time.
        loop {
            let Some(entries) = self.subs.get_mut(&sub) else { return };
            let subscription = Arc::clone(&entries.sub);
            let Some(entry) = entries.regions.get_mut(&region) else { return };
            if entry.end.is_some() {
                return;
            }
            self.rows.clear();
            let prewrites = &self.shared.prewrites;
            let result = entry.rows.apply_up_to(
                &mut rows,
                self.shared.batch_bytes,
                prewrites,
                &mut self.rows,
            );
            if entry.rows.is_initialized() && !entry.marked_initialized {
                entry.marked_initialized = true;
                entry.permit = None;
                subscription.state().lock.mark_initialized(region);
            }
            if self.deliver(&subscription).await.is_err() {
                // The subscriber is behind on this subscription: rather than wait (and hold up
                // the worker's other subscriptions), the region steps aside and is read again
                // from its checkpoint once the subscriber has caught up.
                tracing::debug!(
                    subscription = sub,
                    region,
                    "subscription quota full: region paused"
                );
                self.shared.metrics.region_errors.with_label_values(&["SubscriptionQuota"]).inc();
                self.end(sub, region, End::AwaitQuota);
                return;
            }
            match result {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => return self.on_bad_row(sub, region, error),
            }
        }
    }

    /// A row of the region's stream could not be applied.
    fn on_bad_row(&mut self, sub: u64, region: u64, error: RowError) {
        if let RowError::SpillRead { .. } = error {
            // Not TiKV's row but this machine's disk: asking the region again would not help.
            tracing::error!(subscription = sub, region, %error, "spilled prewrite lost");
            let error = Error::Spill { region_id: region, error };
            return self.end(sub, region, End::Fail(Box::new(error)));
        }
        // The region's stream cannot be trusted past this row: deregister it and request it
        // again from its resolved ts (what was delivered before is correct), unless the row
        // came back on every attempt: then it is not going away, and the subscription fails.
        self.shared.metrics.region_errors.with_label_values(&["BadRow"]).inc();
        let (failures, delay) = self.shared.region_failed(sub, region, true, Duration::ZERO);
        let attempts = self.shared.config.bad_row_attempts;
        if failures.bad_rows >= attempts {
            tracing::warn!(subscription = sub, region, %error, attempts, "bad row from TiKV again");
            let error = Error::BadRow { region_id: region, attempts, error };
            self.end(sub, region, End::Fail(Box::new(error)));
        } else {
            tracing::warn!(subscription = sub, region, %error, "bad row from TiKV");
            self.end(sub, region, End::Retry { deregister: true, send_failed: false, delay });
        }
    }

    /// Delivers the buffered rows to the subscriber, waiting for the client's memory quota.
    /// Fails, delivering nothing, when the subscription's own quota has no room for them.
    async fn deliver(&mut self, sub: &SubRef) -> Result<(), QuotaFull> {
        if self.rows.is_empty() || sub.is_stopped() {
            self.rows.clear();
            return Ok(());
        }
        let bytes: usize = self.rows.iter().map(RowEvent::footprint).sum();
        let Ok(mut own) = sub.charge_own_quota(bytes) else {
            self.rows.clear();
            return Err(QuotaFull);
        };
        let rows = std::mem::take(&mut self.rows);
        let quota = &self.shared.quota;
        let wanted = bytes.min(self.shared.delivered_quota).min(u32::MAX as usize) as u32;
        // Waiting for the quota ends if the subscription stops (its rows are not wanted any
        // more): unsubscribing a stalled reader frees the worker.
        let mut permit = tokio::select! {
            permit = Arc::clone(quota).acquire_many_owned(wanted) => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()), // closed: shutting down
            },
            () = sub.stopped() => return Ok(()),
        };
        let mut rows = rows;
        let mut state = sub.state();
        // Rows delivered before (the region was read again from its checkpoint) are dropped
        // here, under the lock that orders deliveries, and the others remembered.
        if let Some(delivered) = &mut state.delivered {
            let before = rows.len();
            delivered.keep_new(&mut rows);
            let dropped = (before - rows.len()) as u64;
            if dropped > 0 {
                self.shared.metrics.duplicates_dropped.inc_by(dropped);
            }
            if rows.is_empty() {
                return Ok(());
            }
            if dropped > 0 {
                // The rows kept hold only their own bytes of both quotas.
                let kept: usize = rows.iter().map(RowEvent::footprint).sum();
                let kept_permits = kept.min(self.shared.delivered_quota);
                if let Some(excess) = (wanted as usize).checked_sub(kept_permits)
                    && excess > 0
                {
                    drop(permit.split(excess));
                }
                if let Some(own) = &mut own {
                    own.shrink_to(kept);
                }
            }
        }
        let count = rows.len() as u64;
        // Checked again under the state lock: a subscription that failed while this worker
        // waited for the quota has delivered its error, and nothing may follow it.
        let held = Held { client: Some(permit), own };
        if !sub.is_stopped() && state.deliver(Delivery::Rows(rows, held)) {
            self.shared.metrics.send_events.with_label_values(&["row"]).inc_by(count);
        }
        Ok(())
    }

    fn on_resolved(&mut self, store_id: u64, sub: u64, regions: &[u64], ts: u64) {
        if self.shared.resolved_ts_too_far_ahead(store_id, ts) {
            // Applying it would publish a resolved ts no row can be trusted against: the
            // regions' streams are not trusted either, and are requested again.
            for &region in regions {
                let held = self.subs.get(&sub).and_then(|entries| entries.regions.get(&region));
                if held
                    .is_some_and(|entry| entry.end.is_none() && entry.ctx.peer.store_id == store_id)
                {
                    let delay = self.shared.retry_delay(sub, region, Duration::ZERO);
                    let end = End::Retry { deregister: true, send_failed: false, delay };
                    self.end(sub, region, end);
                }
            }
            return;
        }
        let Some(entries) = self.subs.get_mut(&sub) else { return };
        let advanced = &mut self.advanced;
        advanced.clear();
        for region in regions {
            if let Some(entry) = entries.regions.get_mut(region)
                && entry.end.is_none()
                && entry.rows.advance(ts)
            {
                advanced.push((*region, entry.handle));
            }
        }
        if advanced.is_empty() {
            return;
        }
        let subscription = Arc::clone(&entries.sub);
        let shared = &self.shared;
        let mut state = subscription.state();
        state.lock.advance_handles(advanced.iter().map(|&(_, handle)| handle), ts);
        if ts < state.lock_target {
            let (now, target) = (shared.now(), state.lock_target);
            for &(region, _) in advanced.iter() {
                shared.resolve_requests.request(now, region, target);
            }
        }
        shared.publish(&subscription, &mut state);
    }
}

fn kind_label(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Prewrite => "PREWRITE",
        RowKind::Commit => "COMMIT",
        RowKind::Rollback => "ROLLBACK",
        RowKind::Committed => "COMMITTED",
        RowKind::Initialized => "INITIALIZED",
        RowKind::Unspecified | RowKind::Unknown(_) => "UNKNOWN",
    }
}
