//! The resolver stage: for a region whose resolved ts is held back by locks, scan its locks
//! below a target ts (`KvScanLock`), learn each transaction's fate as client-go does, and settle
//! the region's locks of finished transactions (`KvResolveLock`). Every RPC goes through the
//! transport, over the same per-store connections as the change streams. Tasks come from the
//! shared [`ResolveRequests`](crate::shared::ResolveRequests) queue: bounded, merged per region,
//! at most once per cooldown; one task runs at a time.
//!
//! A transaction's fate ([`txn_fate`]):
//! - its primary (`KvCheckTxnStatus`, with a fresh ts against which TiKV judges the primary's
//!   TTL) says committed, rolled back (TiKV rolls back an expired primary itself), or locked;
//! - a primary that left no trace may still be on its way (secondaries can be prewritten before
//!   their primary): it is rolled back (`rollback_if_not_exist`) only once the *scanned* lock's
//!   TTL has expired too; until then the transaction is alive;
//! - an async-commit primary stays locked whatever its TTL: once expired, its secondaries decide
//!   (`KvCheckSecondaryLocks`): a committed one gives the commit ts, a missing one (TiKV then
//!   writes a rollback, so it can never be prewritten) means rolled back, and when every key is
//!   locked the transaction is committed at the largest `min_commit_ts`;
//! - pessimistic locks are left alone: they never hold a resolved ts back.
//!
//! The target ts is kept below PD's clock minus [`LOCK_RESOLVE_MARGIN`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvfeed_regioncache::Region;
use kvfeed_span::EncodedKey;
use kvfeed_transport::{
    CheckTxnStatus, KeyError, KvError, LockInfo, LockKind, RegionTarget, ResolveLock, ScanLock,
    TxnStatus as WireStatus,
};

use crate::resolve_lock::ResolveTask;
use crate::shared::{Shared, physical_ms};

/// Locks asked for per `KvScanLock` call.
const SCAN_LIMIT: u32 = 1024;
/// Attempts per region (each region error reloads the region and tries again).
const ATTEMPTS: usize = 8;

/// Locks are resolved only below PD's clock minus this margin: younger transactions are normal
/// traffic, and a target at or above the clock would scan locks of transactions that have not
/// even started when the scan was asked for.
pub const LOCK_RESOLVE_MARGIN: Duration = Duration::from_secs(1);

/// Why resolving a region's locks stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Pd(#[from] kvfeed_regioncache::Error),
    #[error(transparent)]
    Tikv(#[from] KvError),
    #[error("region errors persisted")]
    GaveUp,
}

/// The fate of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Still running (or possibly still prewriting): leave its locks alone.
    Alive,
    /// Committed at this ts.
    Committed(u64),
    /// Rolled back (or its lock expired and was rolled back now).
    RolledBack,
}

/// Whether a lock of `start_ts` with `ttl_ms` has expired at `current_ts` (the TTL counts from
/// the start ts's physical time).
fn expired(start_ts: u64, ttl_ms: u64, current_ts: u64) -> bool {
    physical_ms(current_ts) >= physical_ms(start_ts).saturating_add(ttl_ms)
}

/// The highest target ts allowed at PD time `current_ts`.
pub(crate) fn target_limit(current_ts: u64) -> u64 {
    let margin = u64::try_from(LOCK_RESOLVE_MARGIN.as_millis()).unwrap_or(u64::MAX);
    current_ts.saturating_sub(margin << kvfeed_regioncache::LOGICAL_BITS)
}

/// The resolver's loop: one task at a time, in request order.
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let (task, waited) = shared.resolve_requests.next(|| shared.now()).await;
        if let Some(waited) = waited {
            shared
                .metrics
                .lock_resolve_duration
                .with_label_values(&["wait"])
                .observe(waited.as_secs_f64());
        }
        let started = Instant::now();
        match resolve_region(&shared, task).await {
            Ok(resolved) => tracing::info!(
                region = task.region_id,
                target_ts = task.target_ts,
                resolved,
                "locks resolved"
            ),
            Err(error) => tracing::warn!(
                region = task.region_id,
                target_ts = task.target_ts,
                %error,
                "resolving locks failed"
            ),
        }
        shared
            .metrics
            .lock_resolve_duration
            .with_label_values(&["run"])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Resolves the region's locks below the task's target; returns how many transactions were
/// settled.
async fn resolve_region(shared: &Shared, task: ResolveTask) -> Result<usize, ResolveError> {
    let current_ts = shared.source.pd().get_ts().await?;
    let max_ts = task.target_ts.min(target_limit(current_ts));
    let mut start_key = Bytes::new();
    let mut settled = 0;
    // Attempts count region errors only: a region with many locks takes many pages.
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        attempts += 1;
        let Some(region) = shared.source.region_by_id(task.region_id).await? else {
            return Ok(settled); // The region is gone (merged): nothing to do here.
        };
        let Some(ctx) = shared.source.rpc_context(region.ver_id()).await? else {
            shared.source.invalidate(region.ver_id());
            continue;
        };
        let target = RegionTarget::from(&ctx);
        let scan = ScanLock {
            max_ts,
            start_key: start_key.clone(),
            limit: SCAN_LIMIT,
            ..ScanLock::default()
        };
        let locks = match shared.transport.scan_lock(&target, &scan).await {
            Err(KvError::Region { .. }) => {
                shared.source.invalidate(region.ver_id());
                continue;
            }
            other => other?,
        };
        let full = locks.len() >= SCAN_LIMIT as usize;
        let next_key = locks.last().map(|lock| {
            let mut key = lock.key.to_vec();
            key.push(0);
            Bytes::from(key)
        });
        // One fate per transaction (from the first of its locks met), one resolve per
        // transaction in this region.
        let mut txns: BTreeMap<u64, LockInfo> = BTreeMap::new();
        for lock in locks {
            txns.entry(lock.start_ts).or_insert(lock);
        }
        let mut region_failed = false;
        for (start_ts, lock) in txns {
            if lock.kind == LockKind::Pessimistic {
                continue;
            }
            let commit_ts = match txn_fate(shared, &lock, current_ts).await? {
                Fate::Alive => continue,
                Fate::Committed(commit_ts) => Some(commit_ts),
                Fate::RolledBack => None,
            };
            let resolve = ResolveLock { start_ts, commit_ts, ..ResolveLock::default() };
            match shared.transport.resolve_lock(&target, &resolve).await {
                Err(KvError::Region { .. }) => {
                    region_failed = true;
                    break;
                }
                other => other?,
            }
            settled += 1;
        }
        if region_failed {
            shared.source.invalidate(region.ver_id());
            continue;
        }
        match next_key {
            Some(key) if full => {
                start_key = key;
                attempts = 0;
            }
            _ => return Ok(settled),
        }
    }
    Err(ResolveError::GaveUp)
}

/// Settles the transaction holding `lock`, a lock a snapshot read met, as a resolution task
/// would: true once it is committed or rolled back (its locks in the key's region resolved, so
/// the key can be read again), false while it is alive (wait, then read again).
pub(crate) async fn resolve_read_lock(
    shared: &Shared,
    lock: &LockInfo,
) -> Result<bool, ResolveError> {
    let current_ts = shared.source.pd().get_ts().await?;
    let commit_ts = match txn_fate(shared, lock, current_ts).await? {
        Fate::Alive => return Ok(false),
        Fate::Committed(commit_ts) => Some(commit_ts),
        Fate::RolledBack => None,
    };
    let resolve = ResolveLock { start_ts: lock.start_ts, commit_ts, ..ResolveLock::default() };
    for _ in 0..ATTEMPTS {
        let Some((region, target)) = target_of_key(shared, &lock.key).await? else { continue };
        match shared.transport.resolve_lock(&target, &resolve).await {
            Err(KvError::Region { .. }) => shared.source.invalidate(region.ver_id()),
            other => {
                other?;
                return Ok(true);
            }
        }
    }
    Err(ResolveError::GaveUp)
}

/// What became of the transaction of `lock` (a lock met by the scan), as client-go decides.
async fn txn_fate(shared: &Shared, lock: &LockInfo, current_ts: u64) -> Result<Fate, ResolveError> {
    let mut request = CheckTxnStatus {
        primary_key: lock.primary.clone(),
        lock_ts: lock.start_ts,
        caller_start_ts: 0,
        current_ts,
        rollback_if_not_exist: false,
        verify_is_primary: true,
        ..CheckTxnStatus::default()
    };
    loop {
        match check_txn(shared, &request).await {
            Ok(WireStatus::Committed { commit_ts }) => return Ok(Fate::Committed(commit_ts)),
            Ok(WireStatus::RolledBack { .. }) => return Ok(Fate::RolledBack),
            Ok(WireStatus::Locked { ttl, lock: Some(primary), .. })
                if primary.use_async_commit && !request.force_sync_commit =>
            {
                if !expired(primary.start_ts, ttl, current_ts) {
                    return Ok(Fate::Alive);
                }
                match async_commit_fate(shared, &primary).await? {
                    Some(fate) => return Ok(fate),
                    // A secondary is not an async-commit lock: settle it as a normal one.
                    None => request.force_sync_commit = true,
                }
            }
            Ok(WireStatus::Locked { .. }) => return Ok(Fate::Alive),
            Err(ResolveError::Tikv(KvError::Key { error, .. }))
                if matches!(*error, KeyError::TxnNotFound { .. }) =>
            {
                // No lock and no record at the primary: its prewrite may still be on its way.
                // Only once the scanned lock expired is a rollback asked for.
                if request.rollback_if_not_exist || !expired(lock.start_ts, lock.ttl, current_ts) {
                    return Ok(Fate::Alive);
                }
                request.rollback_if_not_exist = true;
            }
            Err(ResolveError::Tikv(KvError::Key { error, .. }))
                if matches!(*error, KeyError::PrimaryMismatch(_)) =>
            {
                // The key named as primary holds a lock that is not one (a pessimistic
                // transaction's): not ours to settle.
                tracing::debug!(start_ts = lock.start_ts, "primary mismatch: lock left alone");
                return Ok(Fate::Alive);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The fate of an expired async-commit transaction from its secondaries; `None` if one of them
/// is not an async-commit lock (the transaction fell back to a normal commit).
async fn async_commit_fate(
    shared: &Shared,
    primary: &LockInfo,
) -> Result<Option<Fate>, ResolveError> {
    let mut commit_ts = primary.min_commit_ts;
    let mut pending: Vec<Bytes> = primary.secondaries.clone();
    let mut attempts = 0;
    while let Some(first) = pending.first().cloned() {
        attempts += 1;
        if attempts > ATTEMPTS * pending.len().max(1) {
            return Err(ResolveError::GaveUp);
        }
        let Some((region, target)) = target_of_key(shared, &first).await? else { continue };
        // Every pending key of this region in one call.
        let (keys, rest): (Vec<Bytes>, Vec<Bytes>) = pending
            .iter()
            .cloned()
            .partition(|key| region.contains_key(EncodedKey::encode(key).as_bytes()));
        let locks =
            match shared.transport.check_secondary_locks(&target, primary.start_ts, &keys).await {
                Err(KvError::Region { .. }) => {
                    shared.source.invalidate(region.ver_id());
                    continue;
                }
                other => other?,
            };
        if let Some(committed) = locks.commit_ts {
            return Ok(Some(Fate::Committed(committed)));
        }
        if locks.locks.len() < keys.len() {
            // A key neither locked nor committed: TiKV wrote a rollback on it, so the
            // transaction can never commit.
            return Ok(Some(Fate::RolledBack));
        }
        if locks.locks.iter().any(|l| !l.use_async_commit) {
            return Ok(None);
        }
        commit_ts = locks.locks.iter().map(|l| l.min_commit_ts).fold(commit_ts, u64::max);
        pending = rest;
    }
    Ok(Some(Fate::Committed(commit_ts)))
}

/// `KvCheckTxnStatus` at the region holding the primary, reloading the region on region errors.
async fn check_txn(shared: &Shared, request: &CheckTxnStatus) -> Result<WireStatus, ResolveError> {
    for _ in 0..ATTEMPTS {
        let Some((region, target)) = target_of_key(shared, &request.primary_key).await? else {
            continue;
        };
        match shared.transport.check_txn_status(&target, request).await {
            Err(KvError::Region { .. }) => {
                shared.source.invalidate(region.ver_id());
            }
            other => return Ok(other?),
        }
    }
    Err(ResolveError::GaveUp)
}

/// The region holding the raw `key` and where to ask about it; `None` (the region invalidated,
/// to be tried again) while its leader is unknown. A key without a region is
/// [`ResolveError::GaveUp`].
async fn target_of_key(
    shared: &Shared,
    key: &[u8],
) -> Result<Option<(Region, RegionTarget)>, ResolveError> {
    let encoded = EncodedKey::encode(key);
    let Some(region) = shared.source.region_at(encoded.as_bytes()).await? else {
        return Err(ResolveError::GaveUp);
    };
    let Some(ctx) = shared.source.rpc_context(region.ver_id()).await? else {
        shared.source.invalidate(region.ver_id());
        return Ok(None);
    };
    Ok(Some((region, RegionTarget::from(&ctx))))
}
