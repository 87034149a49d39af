//! Lock resolution on the stores' pooled connections: `KvScanLock`, `KvCheckTxnStatus`,
//! `KvCheckSecondaryLocks` and `KvResolveLock` of `tikvpb.Tikv` (served on the same port as
//! `ChangeData`), with domain types in and out (wire reference §5).
//!
//! A call takes a [`RegionTarget`] (a region version, the peer to ask and its store, usually
//! from regioncache's [`RpcContext`]) and runs on a channel of that store's pool, the same pool
//! (keyed by store id) that carries its CDC streams: there is no second connection cache. Every
//! request carries a `kvrpcpb::Context` with the region id, its epoch and the peer. Each answer
//! is converted once: a region error into [`RegionError`] (with TiKV's message), a key error
//! into [`KeyError`], a gRPC failure or a timeout into its own [`KvError`] variant. Keys are raw
//! (TiKV's transaction keys, not memcomparable-encoded).

use core::future::Future;

use bytes::Bytes;
use kvfeed_proto::tikvpb::tikv_client::TikvClient;
use kvfeed_proto::{errorpb, kvrpcpb};
use kvfeed_regioncache::{Peer, RegionVerId, RpcContext};
use tonic::transport::Channel;

use crate::error::TransportError;
use crate::event::{RegionError, epoch_to_wire, peer_to_wire};
use crate::request::StoreTarget;
use crate::transport::Transport;

/// Where a request about one region goes: the region version it names, the peer asked (normally
/// the leader) and that peer's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionTarget {
    /// The region id and the epoch the caller knows; a stale one is answered with
    /// [`RegionError::EpochNotMatch`].
    pub region: RegionVerId,
    /// The peer to ask; a peer that is not the leader answers [`RegionError::NotLeader`].
    pub peer: Peer,
    /// The peer's store (its id keys the connection pool).
    pub store: StoreTarget,
}

impl From<&RpcContext> for RegionTarget {
    fn from(ctx: &RpcContext) -> Self {
        Self {
            region: ctx.region,
            peer: ctx.peer,
            store: StoreTarget { store_id: ctx.peer.store_id, address: ctx.address.to_string() },
        }
    }
}

/// `KvScanLock`: the locks of a region with `start_ts <= max_ts`, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanLock {
    /// Only locks of transactions that started at or before this ts.
    pub max_ts: u64,
    /// The first raw key to scan (empty: the region's start).
    pub start_key: Bytes,
    /// The raw key to stop before (empty: the region's end).
    pub end_key: Bytes,
    /// The most locks returned (0: no limit).
    pub limit: u32,
}

/// `KvCheckTxnStatus`: what became of the transaction of a primary lock, rolling it back if its
/// lock expired (or, with `rollback_if_not_exist`, if it left no trace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckTxnStatus {
    /// The transaction's primary key (raw); the target must be the region holding it.
    pub primary_key: Bytes,
    /// The transaction's start ts.
    pub lock_ts: u64,
    /// The start ts of the caller's transaction (0 for a non-transactional reader such as CDC);
    /// TiKV may push the lock's min commit ts past it.
    pub caller_start_ts: u64,
    /// The current ts (from PD), against which the lock's TTL is judged.
    pub current_ts: u64,
    /// Write a rollback record when neither lock nor commit is found.
    pub rollback_if_not_exist: bool,
    /// Treat an async-commit primary as a normal (sync) one.
    pub force_sync_commit: bool,
    /// The lock being resolved is a pessimistic lock.
    pub resolving_pessimistic_lock: bool,
    /// Refuse (with [`KeyError::PrimaryMismatch`]) if the key's lock is not a primary.
    pub verify_is_primary: bool,
}

/// `KvResolveLock`: settle a transaction's locks in a region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveLock {
    /// The transaction's start ts.
    pub start_ts: u64,
    /// `Some(commit ts)` commits the locks, `None` rolls them back.
    pub commit_ts: Option<u64>,
    /// Only these raw keys; empty means every lock of the transaction in the region.
    pub keys: Vec<Bytes>,
}

/// What a lock is for (`kvrpcpb.Op` of the lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// A put (prewrite of a value).
    Put,
    /// A delete.
    Delete,
    /// A read lock (`SELECT ... FOR UPDATE` in optimistic transactions).
    Lock,
    /// A pessimistic lock (not yet prewritten).
    Pessimistic,
    /// Another value (unexpected for a lock, or from a newer TiKV).
    Other(i32),
}

/// A lock TiKV reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// The locked raw key.
    pub key: Bytes,
    /// The transaction's primary key (raw).
    pub primary: Bytes,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Time to live, in milliseconds from the start ts's physical time.
    pub ttl: u64,
    /// Keys in the transaction (a hint for the resolver).
    pub txn_size: u64,
    /// What the lock is for.
    pub kind: LockKind,
    /// The pessimistic transaction's for-update ts (0 otherwise).
    pub for_update_ts: u64,
    /// The transaction uses async commit: check its secondaries to learn its fate.
    pub use_async_commit: bool,
    /// The smallest commit ts the transaction may still get.
    pub min_commit_ts: u64,
    /// The secondary keys (raw) of an async-commit primary.
    pub secondaries: Vec<Bytes>,
}

/// What a transaction's primary says about it (`KvCheckTxnStatus`), as TiKV reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// Committed at `commit_ts`.
    Committed {
        /// The commit ts.
        commit_ts: u64,
    },
    /// Rolled back: before this call, or by it (`action` says which, e.g.
    /// [`TxnAction::TtlExpireRollback`]); [`TxnAction::LockNotExistDoNothing`] means no lock was
    /// found and nothing was written (pessimistic locks).
    RolledBack {
        /// What TiKV did.
        action: TxnAction,
    },
    /// Still locked (an async-commit primary stays locked past its TTL: check its secondaries).
    Locked {
        /// The lock's TTL in milliseconds.
        ttl: u64,
        /// What TiKV did (e.g. [`TxnAction::MinCommitTsPushed`]).
        action: TxnAction,
        /// The primary lock, when TiKV sent it.
        lock: Option<LockInfo>,
    },
}

/// What `KvCheckTxnStatus` did (`kvrpcpb.Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnAction {
    /// Nothing.
    NoAction,
    /// The lock's TTL expired: rolled back.
    TtlExpireRollback,
    /// No lock nor commit found: a rollback record was written.
    LockNotExistRollback,
    /// The lock's min commit ts was pushed past the caller's start ts.
    MinCommitTsPushed,
    /// A pessimistic lock's TTL expired: rolled back.
    TtlExpirePessimisticRollback,
    /// No lock found, nothing written.
    LockNotExistDoNothing,
    /// A value this client does not know.
    Unknown(i32),
}

/// The secondaries of an async-commit transaction (`KvCheckSecondaryLocks`), as TiKV reports
/// them: if any key was committed, `commit_ts` says when; otherwise a key neither locked nor
/// committed was rolled back (so fewer `locks` than keys asked means the transaction can no
/// longer commit), and when every key is still locked the transaction may commit at the largest
/// `min_commit_ts`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecondaryLocks {
    /// The keys still locked by the transaction.
    pub locks: Vec<LockInfo>,
    /// The commit ts, if a key was committed.
    pub commit_ts: Option<u64>,
}

/// A key error TiKV answered with (`kvrpcpb.KeyError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The key is locked by another transaction.
    Locked(LockInfo),
    /// The transaction left neither lock nor commit (and no rollback was asked for).
    TxnNotFound {
        /// Its start ts.
        start_ts: u64,
        /// Its primary key.
        primary_key: Bytes,
    },
    /// The key's lock is not a primary (`verify_is_primary`).
    PrimaryMismatch(Option<LockInfo>),
    /// A retryable failure, TiKV's message.
    Retryable(String),
    /// The request was aborted, TiKV's message (e.g. an invalid commit ts).
    Abort(String),
    /// Any other key error (write conflict, deadlock, commit ts expired, ...), described.
    Other(String),
}

/// Why a call of the `Tikv` service (lock resolution, snapshot reads) failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store cannot be used: its address is invalid.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// TiKV answered with a region error: reload the region (and its leader) and try again.
    #[error(
        "{method} of region {region_id} on store {store_id}: region error {error:?}: {message}"
    )]
    Region {
        /// The method.
        method: &'static str,
        /// The store asked.
        store_id: u64,
        /// The region named.
        region_id: u64,
        /// The region error ([`RegionError::Unknown`] for kinds a CDC stream never sends, such
        /// as `KeyNotInRegion` or `StoreNotMatch`: `message` says which).
        error: RegionError,
        /// TiKV's message.
        message: String,
    },
    /// TiKV refused the request with a key error.
    #[error("{method} on store {store_id}: key error {error:?}")]
    Key {
        /// The method.
        method: &'static str,
        /// The store asked.
        store_id: u64,
        /// The key error (boxed: it may carry a whole lock).
        error: Box<KeyError>,
    },
    /// The call failed with a gRPC status: the store is unreachable (`UNAVAILABLE`, 14), the
    /// connection broke, the store is shutting down, ...
    #[error("{method} on store {store_id} failed with gRPC status {code}: {message}")]
    Grpc {
        /// The method.
        method: &'static str,
        /// The store asked.
        store_id: u64,
        /// The gRPC status code (14 is `UNAVAILABLE`).
        code: i32,
        /// The status message.
        message: String,
    },
    /// No answer within [`TransportConfig::request_timeout`](crate::TransportConfig).
    #[error("{method} on store {store_id} timed out")]
    Timeout {
        /// The method.
        method: &'static str,
        /// The store asked.
        store_id: u64,
    },
}

impl Transport {
    /// `KvScanLock`: the locks of the target region with start ts at most `request.max_ts`, in
    /// key order.
    pub async fn scan_lock(
        &self,
        target: &RegionTarget,
        request: &ScanLock,
    ) -> Result<Vec<LockInfo>, KvError> {
        const METHOD: &str = "KvScanLock";
        let wire = kvrpcpb::ScanLockRequest {
            context: Some(context(target)),
            max_version: request.max_ts,
            start_key: request.start_key.clone(),
            limit: request.limit,
            end_key: request.end_key.clone(),
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move { client.kv_scan_lock(wire).await })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)?;
        Ok(resp.locks.into_iter().map(lock_info).collect())
    }

    /// `KvCheckTxnStatus` on the region holding the primary key.
    pub async fn check_txn_status(
        &self,
        target: &RegionTarget,
        request: &CheckTxnStatus,
    ) -> Result<TxnStatus, KvError> {
        const METHOD: &str = "KvCheckTxnStatus";
        let wire = kvrpcpb::CheckTxnStatusRequest {
            context: Some(context(target)),
            primary_key: request.primary_key.clone(),
            lock_ts: request.lock_ts,
            caller_start_ts: request.caller_start_ts,
            current_ts: request.current_ts,
            rollback_if_not_exist: request.rollback_if_not_exist,
            force_sync_commit: request.force_sync_commit,
            resolving_pessimistic_lock: request.resolving_pessimistic_lock,
            verify_is_primary: request.verify_is_primary,
            is_txn_file: false,
        };
        let resp =
            self.unary(target, METHOD, |mut client| async move {
                client.kv_check_txn_status(wire).await
            })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)?;
        let action = txn_action(resp.action);
        Ok(if resp.commit_version > 0 {
            TxnStatus::Committed { commit_ts: resp.commit_version }
        } else if resp.lock_ttl > 0 {
            TxnStatus::Locked { ttl: resp.lock_ttl, action, lock: resp.lock_info.map(lock_info) }
        } else {
            TxnStatus::RolledBack { action }
        })
    }

    /// `KvCheckSecondaryLocks`: the state of an async-commit transaction's secondary `keys`
    /// (raw) in the target region. A key neither locked nor committed is rolled back by TiKV.
    pub async fn check_secondary_locks(
        &self,
        target: &RegionTarget,
        start_ts: u64,
        keys: &[Bytes],
    ) -> Result<SecondaryLocks, KvError> {
        const METHOD: &str = "KvCheckSecondaryLocks";
        let wire = kvrpcpb::CheckSecondaryLocksRequest {
            context: Some(context(target)),
            keys: keys.to_vec(),
            start_version: start_ts,
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move {
                client.kv_check_secondary_locks(wire).await
            })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)?;
        Ok(SecondaryLocks {
            locks: resp.locks.into_iter().map(lock_info).collect(),
            commit_ts: (resp.commit_ts > 0).then_some(resp.commit_ts),
        })
    }

    /// `KvResolveLock`: commits (`commit_ts: Some`) or rolls back (`None`) the transaction's
    /// locks in the target region.
    pub async fn resolve_lock(
        &self,
        target: &RegionTarget,
        request: &ResolveLock,
    ) -> Result<(), KvError> {
        const METHOD: &str = "KvResolveLock";
        let wire = kvrpcpb::ResolveLockRequest {
            context: Some(context(target)),
            start_version: request.start_ts,
            commit_version: request.commit_ts.unwrap_or(0),
            keys: request.keys.clone(),
            ..kvrpcpb::ResolveLockRequest::default()
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move { client.kv_resolve_lock(wire).await })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)
    }

    /// One unary call on a channel of the target's store pool, within the request timeout. A
    /// broken connection is left to the pool: tonic reconnects the unary channel, and the
    /// streams retire a failed stream connection.
    pub(crate) async fn unary<Resp, F, Fut>(
        &self,
        target: &RegionTarget,
        method: &'static str,
        call: F,
    ) -> Result<Resp, KvError>
    where
        F: FnOnce(TikvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let store_id = target.store.store_id;
        let channel = self.unary_channel(&target.store).await?;
        let client = TikvClient::new(channel)
            .max_decoding_message_size(self.config().max_decoding_message_size);
        match tokio::time::timeout(self.config().request_timeout, call(client)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(KvError::Grpc {
                method,
                store_id,
                code: status.code() as i32,
                message: status.message().to_owned(),
            }),
            Err(_elapsed) => Err(KvError::Timeout { method, store_id }),
        }
    }
}

/// The request context: region id, epoch and peer.
pub(crate) fn context(target: &RegionTarget) -> kvrpcpb::Context {
    kvrpcpb::Context {
        region_id: target.region.id,
        region_epoch: Some(epoch_to_wire(target.region.epoch)),
        peer: Some(peer_to_wire(target.peer)),
        ..kvrpcpb::Context::default()
    }
}

/// A response's region error, then its key error, as a [`KvError`].
pub(crate) fn check(
    target: &RegionTarget,
    method: &'static str,
    region_error: Option<errorpb::Error>,
    key_error: Option<kvrpcpb::KeyError>,
) -> Result<(), KvError> {
    let store_id = target.store.store_id;
    if let Some(error) = region_error {
        let message = error.message.clone();
        return Err(KvError::Region {
            method,
            store_id,
            region_id: target.region.id,
            error: RegionError::from_errorpb(error),
            message,
        });
    }
    match key_error {
        Some(error) => Err(KvError::Key { method, store_id, error: Box::new(key_error_of(error)) }),
        None => Ok(()),
    }
}

pub(crate) fn key_error_of(error: kvrpcpb::KeyError) -> KeyError {
    if let Some(lock) = error.locked {
        KeyError::Locked(lock_info(lock))
    } else if let Some(missing) = error.txn_not_found {
        KeyError::TxnNotFound { start_ts: missing.start_ts, primary_key: missing.primary_key }
    } else if let Some(mismatch) = error.primary_mismatch {
        KeyError::PrimaryMismatch(mismatch.lock_info.map(lock_info))
    } else if !error.retryable.is_empty() {
        KeyError::Retryable(error.retryable)
    } else if !error.abort.is_empty() {
        KeyError::Abort(error.abort)
    } else {
        KeyError::Other(format!("{error:?}"))
    }
}

pub(crate) fn lock_info(lock: kvrpcpb::LockInfo) -> LockInfo {
    LockInfo {
        key: lock.key,
        primary: lock.primary_lock,
        start_ts: lock.lock_version,
        ttl: lock.lock_ttl,
        txn_size: lock.txn_size,
        kind: match kvrpcpb::Op::try_from(lock.lock_type) {
            Ok(kvrpcpb::Op::Put) => LockKind::Put,
            Ok(kvrpcpb::Op::Del) => LockKind::Delete,
            Ok(kvrpcpb::Op::Lock) => LockKind::Lock,
            Ok(kvrpcpb::Op::PessimisticLock) => LockKind::Pessimistic,
            _ => LockKind::Other(lock.lock_type),
        },
        for_update_ts: lock.lock_for_update_ts,
        use_async_commit: lock.use_async_commit,
        min_commit_ts: lock.min_commit_ts,
        secondaries: lock.secondaries,
    }
}

fn txn_action(action: i32) -> TxnAction {
    match kvrpcpb::Action::try_from(action) {
        Ok(kvrpcpb::Action::NoAction) => TxnAction::NoAction,
        Ok(kvrpcpb::Action::TtlExpireRollback) => TxnAction::TtlExpireRollback,
        Ok(kvrpcpb::Action::LockNotExistRollback) => TxnAction::LockNotExistRollback,
        Ok(kvrpcpb::Action::MinCommitTsPushed) => TxnAction::MinCommitTsPushed,
        Ok(kvrpcpb::Action::TtlExpirePessimisticRollback) => {
            TxnAction::TtlExpirePessimisticRollback
        }
        Ok(kvrpcpb::Action::LockNotExistDoNothing) => TxnAction::LockNotExistDoNothing,
        Err(_) => TxnAction::Unknown(action),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_and_actions_are_typed() {
        let locked = kvrpcpb::KeyError {
            locked: Some(kvrpcpb::LockInfo {
                key: Bytes::from_static(b"k"),
                primary_lock: Bytes::from_static(b"p"),
                lock_version: 5,
                lock_ttl: 3,
                lock_type: kvrpcpb::Op::Del as i32,
                ..kvrpcpb::LockInfo::default()
            }),
            ..kvrpcpb::KeyError::default()
        };
        let KeyError::Locked(lock) = key_error_of(locked) else { panic!("not Locked") };
        assert_eq!((lock.key.as_ref(), lock.primary.as_ref()), (&b"k"[..], &b"p"[..]));
        assert_eq!((lock.start_ts, lock.ttl, lock.kind), (5, 3, LockKind::Delete));
        let abort = kvrpcpb::KeyError { abort: "no".into(), ..kvrpcpb::KeyError::default() };
        assert_eq!(key_error_of(abort), KeyError::Abort("no".into()));
        let conflict = kvrpcpb::KeyError {
            conflict: Some(kvrpcpb::WriteConflict::default()),
            ..kvrpcpb::KeyError::default()
        };
        assert!(
            matches!(key_error_of(conflict), KeyError::Other(text) if text.contains("conflict"))
        );
        assert_eq!(txn_action(1), TxnAction::TtlExpireRollback);
        assert_eq!(txn_action(5), TxnAction::LockNotExistDoNothing);
        assert_eq!(txn_action(77), TxnAction::Unknown(77));
        let odd = kvrpcpb::LockInfo { lock_type: 9, ..kvrpcpb::LockInfo::default() };
        assert_eq!(lock_info(odd).kind, LockKind::Other(9));
    }

    #[test]
    fn the_context_names_region_epoch_and_peer() {
        let target = RegionTarget {
            region: RegionVerId { id: 4, epoch: kvfeed_regioncache::RegionEpoch::new(3, 2) },
            peer: Peer::voter(41, 1),
            store: StoreTarget { store_id: 1, address: "127.0.0.1:1".to_owned() },
        };
        let ctx = context(&target);
        assert_eq!(ctx.region_id, 4);
        assert_eq!(
            ctx.region_epoch,
            Some(kvfeed_proto::metapb::RegionEpoch { conf_ver: 2, version: 3 })
        );
        let peer = ctx.peer.unwrap();
        assert_eq!((peer.id, peer.store_id), (41, 1));
        assert_eq!(peer.role, kvfeed_proto::metapb::PeerRole::Voter as i32);
    }
}
