//! The safe-point keeper: the client's PD service GC safe point, held at the lowest checkpoint
//! of its subscriptions so that TiKV keeps every version they still need.
//!
//! A subscription's checkpoint is the last resolved ts its subscriber read (its start ts before
//! the first; [`Subscription::checkpoint`](crate::Subscription::checkpoint)): every region is
//! requested again from at or above it, and a restarted subscriber resumes from it, so the
//! versions above it and the one at or below it (the old values) must stay. [`SafePointKeeper::hold_for`] sets the safe
//! point before a subscription starts and refuses a start ts below PD's minimum service safe
//! point or below the cluster's GC safe point; [`run`] refreshes it every
//! [`Config::gc_refresh`](crate::Config::gc_refresh), advancing it as the checkpoints advance,
//! well within its TTL ([`Config::gc_ttl`](crate::Config::gc_ttl)). When PD refuses an update
//! (its minimum is above a checkpoint: the safe point expired while the client could not reach
//! PD, or another service let GC pass it), the subscriptions below the minimum fail with
//! [`Error::GcSafePointPassed`] instead of reading history that may be gone. A clean shutdown
//! removes the safe point ([`SafePointKeeper::release`]); after a crash it expires with its TTL.
//!
//! Snapshot reads hold the safe point at their read ts in the same way, for as long as they run
//! ([`SafePointKeeper::hold_read`] returns a [`ReadHold`]; its drop lets the point advance).
//!
//! Updates are serialised by one async mutex, held from the PD call to the registry insert of a
//! new subscription: a refresh cannot advance the safe point past a start ts just admitted.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use crate::config::Config;
use crate::error::Error;
use crate::scheduler::Scheduler;
use crate::shared::Shared;
use crate::subscription::SubRef;

/// The prefix of every service id this client sets.
const SERVICE_PREFIX: &str = "kvfeed-";

/// Holds the client's service safe point.
#[derive(Debug)]
pub(crate) struct SafePointKeeper {
    service_id: String,
    ttl_secs: i64,
    /// Whether PD holds a safe point for this client. Locked for every update.
    held: Mutex<bool>,
    /// The snapshot reads running: id -> (read ts, set once PD's minimum passed it).
    reads: std::sync::Mutex<Reads>,
}

#[derive(Debug, Default)]
struct Reads {
    next_id: u64,
    live: BTreeMap<u64, (u64, Arc<OnceLock<Error>>)>,
}

/// A snapshot read's hold on the safe point, at its read ts, until dropped.
#[derive(Debug)]
pub(crate) struct ReadHold {
    keeper: Weak<SafePointKeeper>,
    id: u64,
    ts: u64,
    lost: Arc<OnceLock<Error>>,
}

impl ReadHold {
    /// [`Error::GcSafePointPassed`] once PD's minimum safe point passed the read's ts (history
    /// it reads may be gone).
    pub(crate) fn lost(&self) -> Option<Error> {
        self.lost.get().cloned()
    }

    /// The read ts held.
    pub(crate) fn ts(&self) -> u64 {
        self.ts
    }

    /// Moves the hold up to `ts` (a lower `ts` is ignored); the next refresh lets the safe
    /// point follow.
    pub(crate) fn advance(&mut self, ts: u64) {
        if ts <= self.ts {
            return;
        }
        self.ts = ts;
        if let Some(keeper) = self.keeper.upgrade()
            && let Some(entry) = kvfeed_base::lock(&keeper.reads).live.get_mut(&self.id)
        {
            entry.0 = ts;
        }
    }
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.upgrade() {
            kvfeed_base::lock(&keeper.reads).live.remove(&self.id);
        }
    }
}

/// A subscription whose checkpoint PD's minimum safe point passed.
pub(crate) struct Lost {
    pub(crate) sub: SubRef,
    pub(crate) error: Error,
}

impl SafePointKeeper {
    /// A keeper for `config`'s service name (or a name of its own, unique per client).
    pub(crate) fn new(config: &Config) -> Self {
        let name = config.gc_service_name.clone().unwrap_or_else(unique_name);
        Self {
            service_id: format!("{SERVICE_PREFIX}{name}"),
            ttl_secs: i64::try_from(config.gc_ttl.as_secs()).unwrap_or(i64::MAX).max(1),
            held: Mutex::new(false),
            reads: std::sync::Mutex::default(),
        }
    }

    /// The service id PD knows this client's safe point by.
    pub(crate) fn service_id(&self) -> &str {
        &self.service_id
    }

    /// Admits a subscription from `start_ts`: holds the safe point at or below it, and refuses
    /// a start ts below PD's minimum service safe point or the cluster's GC safe point
    /// ([`Error::StartTsBelowGcSafePoint`]). Returns the keeper's lock, to be held until the
    /// subscription is in the registry, and the subscriptions found lost on the way.
    pub(crate) async fn hold_for(
        &self,
        shared: &Shared,
        start_ts: u64,
    ) -> Result<(MutexGuard<'_, bool>, Vec<Lost>), Error> {
        let mut held = self.held.lock().await;
        let (answer, lost) = self.update(shared, &mut held, Some(start_ts)).await?;
        if let Some(min) = answer
            && min > start_ts
        {
            // Subscriptions found lost on the way are found again (and failed) by the next
            // refresh: PD refuses their checkpoints until they stop.
            return Err(Error::StartTsBelowGcSafePoint { start_ts, safe_point: min });
        }
        let safe_point = shared.source.pd().gc_safe_point().await?;
        if start_ts < safe_point {
            return Err(Error::StartTsBelowGcSafePoint { start_ts, safe_point });
        }
        Ok((held, lost))
    }

    /// Admits a snapshot read at `ts`: holds the safe point at or below it until the returned
    /// hold is dropped, and refuses a ts below PD's minimum service safe point or the cluster's
    /// GC safe point ([`Error::StartTsBelowGcSafePoint`]).
    pub(crate) async fn hold_read(
        self: &Arc<Self>,
        shared: &Shared,
        ts: u64,
    ) -> Result<(ReadHold, Vec<Lost>), Error> {
        let (held, lost) = self.hold_for(shared, ts).await?;
        let mut reads = kvfeed_base::lock(&self.reads);
        let id = reads.next_id;
        reads.next_id += 1;
        let flag = Arc::new(OnceLock::new());
        reads.live.insert(id, (ts, Arc::clone(&flag)));
        drop(reads);
        // Registered before the keeper's lock is let go: no refresh passes `ts` first.
        drop(held);
        Ok((ReadHold { keeper: Arc::downgrade(self), id, ts, lost: flag }, lost))
    }

    /// Moves the safe point to the lowest checkpoint now (removing it when no subscription
    /// is left); returns the subscriptions PD's minimum passed.
    pub(crate) async fn refresh(&self, shared: &Shared) -> Result<Vec<Lost>, Error> {
        let mut held = self.held.lock().await;
        Ok(self.update(shared, &mut held, None).await?.1)
    }

    /// Removes the safe point, if one is held (a clean shutdown), unless
    /// [`Config::gc_keep_on_shutdown`] asks to leave it for a successor.
    pub(crate) async fn release(&self, shared: &Shared) {
        if shared.config.gc_keep_on_shutdown {
            tracing::info!(service_id = %self.service_id, "GC safe point left to expire with its TTL");
            return;
        }
        let mut held = self.held.lock().await;
        if *held {
            match shared.source.pd().update_service_safe_point(&self.service_id, 0, 0).await {
                Ok(_) => *held = false,
                Err(error) => tracing::warn!(
                    service_id = %self.service_id,
                    %error,
                    "cannot remove the GC safe point; it expires with its TTL"
                ),
            }
        }
    }

    /// Sets the safe point at the lowest checkpoint and `extra` (a start ts being admitted).
    /// When PD refuses it, the subscriptions below PD's minimum are lost and it is set at the
    /// lowest of the others. Returns PD's minimum when it refused `extra` (`None` when `extra`
    /// is admitted, or absent), and the lost subscriptions.
    async fn update(
        &self,
        shared: &Shared,
        held: &mut bool,
        extra: Option<u64>,
    ) -> Result<(Option<u64>, Vec<Lost>), Error> {
        let pd = shared.source.pd();
        let mut lost: Vec<Lost> = Vec::new();
        // Each round loses at least one subscription or read, or finds one that ended (at most
        // MAX_ROUNDS times), so this ends.
        const MAX_ROUNDS: u32 = 8;
        let mut rounds = 0;
        loop {
            let live = live_checkpoints(shared, &lost);
            let reads = self.read_floor();
            let floor =
                live.iter().map(|(_, checkpoint)| *checkpoint).chain(extra).chain(reads).min();
            let Some(floor) = floor else {
                if *held {
                    pd.update_service_safe_point(&self.service_id, 0, 0).await?;
                    *held = false;
                }
                return Ok((None, lost));
            };
            let answer =
                pd.update_service_safe_point(&self.service_id, self.ttl_secs, floor).await?;
            if !answer.refuses(floor) {
                *held = true;
                return Ok((None, lost));
            }
            let min = answer.min_safe_point;
            let passed: Vec<Lost> = live
                .into_iter()
                .filter(|(_, checkpoint)| *checkpoint < min)
                .map(|(sub, checkpoint)| Lost {
                    sub,
                    error: Error::GcSafePointPassed {
                        checkpoint,
                        safe_point: min,
                        service_id: answer.service_id.clone(),
                    },
                })
                .collect();
            let reads_passed = self.fail_reads_below(min, &answer.service_id);
            if passed.is_empty() && !reads_passed {
                if extra.is_some_and(|extra| extra < min) || rounds >= MAX_ROUNDS {
                    // `extra` is below the minimum: refused; the others hold as they were.
                    return Ok((Some(min), lost));
                }
                // The floor came from a read that ended meanwhile: set it again without it.
                rounds += 1;
                continue;
            }
            lost.extend(passed);
        }
    }
}

impl SafePointKeeper {
    /// The lowest ts of the snapshot reads still good.
    fn read_floor(&self) -> Option<u64> {
        let reads = kvfeed_base::lock(&self.reads);
        reads.live.values().filter(|(_, lost)| lost.get().is_none()).map(|(ts, _)| *ts).min()
    }

    /// Fails the reads below `min`; returns whether one was not failed before.
    fn fail_reads_below(&self, min: u64, service_id: &str) -> bool {
        let reads = kvfeed_base::lock(&self.reads);
        let mut any = false;
        for (ts, lost) in reads.live.values() {
            if *ts < min && lost.get().is_none() {
                let error = Error::GcSafePointPassed {
                    checkpoint: *ts,
                    safe_point: min,
                    service_id: service_id.to_owned(),
                };
                any |= lost.set(error).is_ok();
            }
        }
        any
    }
}

/// The live subscriptions (not stopped, not in `lost`) with their checkpoints.
fn live_checkpoints(shared: &Shared, lost: &[Lost]) -> Vec<(SubRef, u64)> {
    shared
        .registry
        .all()
        .into_iter()
        .filter(|sub| !sub.is_stopped() && !lost.iter().any(|l| l.sub.id == sub.id))
        .map(|sub| {
            let checkpoint = sub.read_checkpoint.load(std::sync::atomic::Ordering::Acquire);
            (sub, checkpoint)
        })
        .collect()
}

/// A service name unique to this client (process id, time and a random hash key).
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// Fails the lost subscriptions.
pub(crate) fn fail_lost(scheduler: &Arc<Scheduler>, lost: Vec<Lost>) {
    for Lost { sub, error } in lost {
        scheduler.stop(&sub, Some(error));
    }
}

/// The keeper's loop: a refresh every `interval`; a PD failure is logged and retried at the
/// next one (the TTL leaves many).
pub(crate) async fn run(
    keeper: Arc<SafePointKeeper>,
    shared: Arc<Shared>,
    scheduler: Arc<Scheduler>,
    interval: Duration,
) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        match keeper.refresh(&shared).await {
            Ok(lost) => fail_lost(&scheduler, lost),
            Err(error) => tracing::warn!(
                service_id = keeper.service_id(),
                %error,
                "cannot refresh the GC safe point; retrying"
            ),
        }
    }
}
