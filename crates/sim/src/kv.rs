//! The `tikvpb.Tikv` lock APIs of one store: `KvScanLock`, `KvCheckTxnStatus`,
//! `KvResolveLock`, `KvCheckSecondaryLocks` (and the service's snapshot reads, served by
//! `read.rs`).
//!
//! Requests carry a `Context` naming the region; a region this store does not lead, or a stale
//! epoch, is answered with the matching `region_error` (RegionNotFound, NotLeader with the
//! leader, EpochNotMatch), as TiKV does. Keys are raw. TTL expiry compares the physical part of
//! the caller's `current_ts` (or the TSO if 0) with the lock's start ts physical time plus TTL;
//! an async-commit primary is reported with its lock (its secondaries decide its fate) and never
//! rolled back by `KvCheckTxnStatus` unless `force_sync_commit` is set.
//! Rolling back or committing locks sends the live ROLLBACK/COMMIT rows to CDC subscribers.

use std::sync::Arc;

use bytes::Bytes;
use kvfeed_proto::kvrpcpb::{self, KeyError};
use kvfeed_proto::tikvpb::tikv_server::Tikv;
use tonic::{Request, Response, Status};

use crate::state::{Shared, lock};
use crate::tikv_context::{check_context, key_not_in_region, lock_info};
use crate::tso::physical_of;

/// The Tikv service of one store.
pub(crate) struct KvService {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store_id: u64,
}

#[tonic::async_trait]
impl Tikv for KvService {
    async fn kv_get(
        &self,
        request: Request<kvrpcpb::GetRequest>,
    ) -> Result<Response<kvrpcpb::GetResponse>, Status> {
        let mut st = lock(&self.shared.state);
        Ok(Response::new(crate::read::get(&mut st, self.store_id, request.get_ref())))
    }

    async fn kv_scan(
        &self,
        request: Request<kvrpcpb::ScanRequest>,
    ) -> Result<Response<kvrpcpb::ScanResponse>, Status> {
        let mut st = lock(&self.shared.state);
        Ok(Response::new(crate::read::scan(&mut st, self.store_id, request.get_ref())))
    }

    async fn kv_batch_get(
        &self,
        request: Request<kvrpcpb::BatchGetRequest>,
    ) -> Result<Response<kvrpcpb::BatchGetResponse>, Status> {
        let mut st = lock(&self.shared.state);
        Ok(Response::new(crate::read::batch_get(&mut st, self.store_id, request.get_ref())))
    }

    async fn kv_scan_lock(
        &self,
        request: Request<kvrpcpb::ScanLockRequest>,
    ) -> Result<Response<kvrpcpb::ScanLockResponse>, Status> {
        let req = request.into_inner();
        let st = lock(&self.shared.state);
        let region = match check_context(&st, self.store_id, req.context.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(kvrpcpb::ScanLockResponse {
                    region_error: Some(*e),
                    ..Default::default()
                }));
            }
        };
        let limit = if req.limit == 0 { usize::MAX } else { req.limit as usize };
        let start = (!req.start_key.is_empty()).then_some(&req.start_key[..]);
        let end = (!req.end_key.is_empty()).then_some(&req.end_key[..]);
        let locks = st
            .mvcc
            .scan_locks(start, end)
            .filter(|(k, l)| region.contains_raw(k) && l.start_ts <= req.max_version)
            .take(limit)
            .map(|(k, l)| lock_info(k, l))
            .collect();
        Ok(Response::new(kvrpcpb::ScanLockResponse { locks, ..Default::default() }))
    }

    async fn kv_resolve_lock(
        &self,
        request: Request<kvrpcpb::ResolveLockRequest>,
    ) -> Result<Response<kvrpcpb::ResolveLockResponse>, Status> {
        let req = request.into_inner();
        let mut st = lock(&self.shared.state);
        let region = match check_context(&st, self.store_id, req.context.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(kvrpcpb::ResolveLockResponse {
                    region_error: Some(*e),
                    ..Default::default()
                }));
            }
        };
        let txns: Vec<(u64, u64)> = if req.start_version > 0 {
            vec![(req.start_version, req.commit_version)]
        } else {
            req.txn_infos.iter().map(|t| (t.txn, t.status)).collect()
        };
        for (start_ts, commit_ts) in txns {
            if commit_ts != 0 && commit_ts <= start_ts {
                let error = KeyError {
                    abort: format!("invalid commit ts {commit_ts} for start ts {start_ts}"),
                    ..KeyError::default()
                };
                return Ok(Response::new(kvrpcpb::ResolveLockResponse {
                    error: Some(error),
                    ..Default::default()
                }));
            }
            let keys: Vec<Bytes> = if req.start_version > 0 && !req.keys.is_empty() {
                req.keys.clone()
            } else {
                st.mvcc.locked_keys(start_ts)
            };
            let keys: Vec<Bytes> = keys.into_iter().filter(|k| region.contains_raw(k)).collect();
            if commit_ts == 0 {
                st.rollback_keys(&keys, start_ts);
            } else {
                st.commit_keys(&keys, start_ts, commit_ts);
            }
        }
        Ok(Response::new(kvrpcpb::ResolveLockResponse::default()))
    }

    async fn kv_check_txn_status(
        &self,
        request: Request<kvrpcpb::CheckTxnStatusRequest>,
    ) -> Result<Response<kvrpcpb::CheckTxnStatusResponse>, Status> {
        let req = request.into_inner();
        let mut st = lock(&self.shared.state);
        let resp = |f: &dyn Fn(&mut kvrpcpb::CheckTxnStatusResponse)| {
            let mut r = kvrpcpb::CheckTxnStatusResponse::default();
            f(&mut r);
            Ok(Response::new(r))
        };
        let region = match check_context(&st, self.store_id, req.context.as_ref()) {
            Ok(r) => r,
            Err(e) => return resp(&|r| r.region_error = Some((*e).clone())),
        };
        let key = req.primary_key.clone();
        if !region.contains_raw(&key) {
            let e = key_not_in_region(&key, &region);
            return resp(&|r| r.region_error = Some(e.clone()));
        }
        let current_ts = if req.current_ts == 0 { st.tso.next() } else { req.current_ts };
        if let Some(l) = st.mvcc.lock(&key).filter(|l| l.start_ts == req.lock_ts).cloned() {
            if l.primary != key && req.verify_is_primary {
                let info = lock_info(&key, &l);
                return resp(&|r| {
                    r.error = Some(KeyError {
                        primary_mismatch: Some(kvrpcpb::PrimaryMismatch {
                            lock_info: Some(info.clone()),
                        }),
                        ..KeyError::default()
                    });
                });
            }
            // An async-commit primary is never rolled back here, expired or not: its fate is
            // in its secondaries (the caller checks them), unless a sync commit is forced.
            let expired = physical_of(current_ts) >= physical_of(l.start_ts) + l.ttl_ms as i64;
            if expired && (!l.async_commit || req.force_sync_commit) {
                st.rollback_keys(std::slice::from_ref(&key), l.start_ts);
                return resp(&|r| r.action = kvrpcpb::Action::TtlExpireRollback as i32);
            }
            let info = lock_info(&key, &l);
            return resp(&|r| {
                r.lock_ttl = l.ttl_ms;
                r.lock_info = Some(info.clone());
                r.action = kvrpcpb::Action::NoAction as i32;
            });
        }
        if let Some(commit_ts) = st.mvcc.commit_ts_of(&key, req.lock_ts) {
            return resp(&|r| r.commit_version = commit_ts);
        }
        if st.mvcc.is_rolled_back(&key, req.lock_ts) {
            return resp(&|r| r.action = kvrpcpb::Action::NoAction as i32);
        }
        if req.rollback_if_not_exist {
            st.rollback_keys(std::slice::from_ref(&key), req.lock_ts);
            return resp(&|r| r.action = kvrpcpb::Action::LockNotExistRollback as i32);
        }
        let e = KeyError {
            txn_not_found: Some(kvrpcpb::TxnNotFound {
                start_ts: req.lock_ts,
                primary_key: key.clone(),
            }),
            ..KeyError::default()
        };
        resp(&|r| r.error = Some(e.clone()))
    }

    async fn kv_check_secondary_locks(
        &self,
        request: Request<kvrpcpb::CheckSecondaryLocksRequest>,
    ) -> Result<Response<kvrpcpb::CheckSecondaryLocksResponse>, Status> {
        let req = request.into_inner();
        let mut st = lock(&self.shared.state);
        let region = match check_context(&st, self.store_id, req.context.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Response::new(kvrpcpb::CheckSecondaryLocksResponse {
                    region_error: Some(*e),
                    ..Default::default()
                }));
            }
        };
        let mut out = kvrpcpb::CheckSecondaryLocksResponse::default();
        for key in req.keys.iter().filter(|k| region.contains_raw(k)) {
            if let Some(l) = st.mvcc.lock(key).filter(|l| l.start_ts == req.start_version) {
                out.locks.push(lock_info(key, l));
            } else if let Some(c) = st.mvcc.commit_ts_of(key, req.start_version) {
                out.commit_ts = c;
            } else {
                // Neither locked nor committed: TiKV writes a rollback so it can never commit.
                st.rollback_keys(std::slice::from_ref(key), req.start_version);
                out.locks.clear();
                return Ok(Response::new(out));
            }
        }
        Ok(Response::new(out))
    }
}
