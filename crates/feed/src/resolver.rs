//! The resolver stage: for a region whose resolved ts is held back by locks, scan its locks
//! below a target ts (`KvScanLock`), ask each transaction's primary for its fate
//! (`KvCheckTxnStatus`, rolling back expired ones), and settle the region's locks of finished
//! transactions (`KvResolveLock`). Every RPC goes through the transport, over the same
//! per-store connections as the change streams. Tasks come from the shared
//! [`ResolveRequests`](crate::shared::ResolveRequests) queue: bounded, merged per region, at
//! most once per cooldown; one task runs at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kvfeed_span::EncodedKey;
use kvfeed_transport::{
    CheckTxnStatus, LockError, RegionTarget, ResolveLock, ScanLock, TxnStatus as WireStatus,
};

use crate::resolve_lock::ResolveTask;
use crate::shared::Shared;

/// Locks asked for per `KvScanLock` call.
const SCAN_LIMIT: u32 = 1024;
/// Attempts per region (each region error reloads the region and tries again).
const ATTEMPTS: usize = 8;

/// Why resolving a region's locks stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Pd(#[from] kvfeed_regioncache::Error),
    #[error(transparent)]
    Tikv(#[from] LockError),
    #[error("region errors persisted")]
    GaveUp,
}

/// The fate of a transaction, from its primary lock.
enum TxnStatus {
    /// Still running: leave its locks alone.
    Alive,
    /// Committed at this ts.
    Committed(u64),
    /// Rolled back (or its lock expired and was rolled back now).
    RolledBack,
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
            max_ts: task.target_ts,
            start_key: start_key.clone(),
            limit: SCAN_LIMIT,
            ..ScanLock::default()
        };
        let locks = match shared.transport.scan_lock(&target, &scan).await {
            Err(LockError::Region { .. }) => {
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
        // One status check per transaction, one resolve per transaction in this region.
        let txns: BTreeMap<u64, Bytes> =
            locks.into_iter().map(|lock| (lock.start_ts, lock.primary)).collect();
        let mut region_failed = false;
        for (start_ts, primary) in txns {
            let commit_ts = match check_txn(shared, &primary, start_ts).await? {
                TxnStatus::Alive => continue,
                TxnStatus::Committed(commit_ts) => Some(commit_ts),
                TxnStatus::RolledBack => None,
            };
            let resolve = ResolveLock { start_ts, commit_ts, ..ResolveLock::default() };
            match shared.transport.resolve_lock(&target, &resolve).await {
                Err(LockError::Region { .. }) => {
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

/// Asks the transaction's primary what became of it, rolling it back if its lock expired.
async fn check_txn(
    shared: &Shared,
    primary: &Bytes,
    start_ts: u64,
) -> Result<TxnStatus, ResolveError> {
    let current_ts = shared.source.pd().get_ts().await?;
    let encoded = EncodedKey::encode(primary);
    let request = CheckTxnStatus {
        primary_key: primary.clone(),
        lock_ts: start_ts,
        caller_start_ts: 0,
        current_ts,
        rollback_if_not_exist: true,
        ..CheckTxnStatus::default()
    };
    for _ in 0..ATTEMPTS {
        let Some(region) = shared.source.region_at(encoded.as_bytes()).await? else {
            return Err(ResolveError::GaveUp);
        };
        let Some(ctx) = shared.source.rpc_context(region.ver_id()).await? else {
            shared.source.invalidate(region.ver_id());
            continue;
        };
        let target = RegionTarget::from(&ctx);
        return Ok(match shared.transport.check_txn_status(&target, &request).await {
            Err(LockError::Region { .. }) => {
                shared.source.invalidate(region.ver_id());
                continue;
            }
            Err(error) => return Err(error.into()),
            Ok(WireStatus::Committed { commit_ts }) => TxnStatus::Committed(commit_ts),
            Ok(WireStatus::Locked { .. }) => TxnStatus::Alive,
            Ok(WireStatus::RolledBack { .. }) => TxnStatus::RolledBack,
        });
    }
    Err(ResolveError::GaveUp)
}
