//! Snapshot reads on the stores' pooled connections: `KvScan`, `KvGet` and `KvBatchGet` of
//! `tikvpb.Tikv` (wire reference §10), with domain types in and out.
//!
//! A read names its region as the lock APIs do ([`RegionTarget`]) and fails the same way
//! ([`KvError`]: a region error, a key error of the whole request, a gRPC failure, a timeout).
//! A key locked by a transaction that may commit at or before the read ts is not an error of
//! the call: it comes back as [`Read::Locked`] beside the values read, for the caller to resolve
//! and read again. Keys are raw.

use bytes::Bytes;
use kvfeed_proto::kvrpcpb;

use crate::kv::{KeyError, KvError, LockInfo, RegionTarget, check, context, key_error_of};
use crate::transport::Transport;

/// What a read found for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The key's value at the read ts.
    Value {
        /// The raw key.
        key: Bytes,
        /// Its value.
        value: Bytes,
    },
    /// The key is locked by a transaction that may commit at or before the read ts: resolve
    /// the lock, then read the key again.
    Locked(LockInfo),
}

/// `KvScan`: one page of a region's keys as of a ts, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The first raw key (inclusive); it must be in the target region.
    pub start_key: Bytes,
    /// The raw key to stop before (empty: the region's end). TiKV stops at the region's end
    /// in any case.
    pub end_key: Bytes,
    /// The read ts.
    pub version: u64,
    /// The most keys returned (values and locks alike); 0 is TiKV's default.
    pub limit: u32,
    /// Return keys only (empty values).
    pub key_only: bool,
}

impl Transport {
    /// `KvScan`: at most `request.limit` keys of the target region from `request.start_key`.
    /// Fewer than `limit` means the range (or the region) ended.
    pub async fn scan(&self, target: &RegionTarget, request: &Scan) -> Result<Vec<Read>, KvError> {
        const METHOD: &str = "KvScan";
        let wire = kvrpcpb::ScanRequest {
            context: Some(context(target)),
            start_key: request.start_key.clone(),
            limit: request.limit,
            version: request.version,
            key_only: request.key_only,
            reverse: false,
            end_key: request.end_key.clone(),
            sample_step: 0,
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move { client.kv_scan(wire).await })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)?;
        reads_of(target.store.store_id, METHOD, resp.pairs)
    }

    /// `KvGet`: the key's value at `version` (`None` when it has none), or its lock.
    pub async fn get(
        &self,
        target: &RegionTarget,
        key: &Bytes,
        version: u64,
    ) -> Result<Option<Read>, KvError> {
        const METHOD: &str = "KvGet";
        let wire = kvrpcpb::GetRequest {
            context: Some(context(target)),
            key: key.clone(),
            version,
            need_commit_ts: false,
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move { client.kv_get(wire).await })
            .await?;
        if let Some(kvrpcpb::KeyError { locked: Some(lock), .. }) = resp.error {
            return Ok(Some(Read::Locked(crate::kv::lock_info(lock))));
        }
        check(target, METHOD, resp.region_error, resp.error)?;
        Ok((!resp.not_found).then(|| Read::Value { key: key.clone(), value: resp.value }))
    }

    /// `KvBatchGet`: the values (and locks) of those of `keys` that have one, all in the target
    /// region.
    pub async fn batch_get(
        &self,
        target: &RegionTarget,
        keys: &[Bytes],
        version: u64,
    ) -> Result<Vec<Read>, KvError> {
        const METHOD: &str = "KvBatchGet";
        let wire = kvrpcpb::BatchGetRequest {
            context: Some(context(target)),
            keys: keys.to_vec(),
            version,
            need_commit_ts: false,
        };
        let resp = self
            .unary(target, METHOD, |mut client| async move { client.kv_batch_get(wire).await })
            .await?;
        check(target, METHOD, resp.region_error, resp.error)?;
        reads_of(target.store.store_id, METHOD, resp.pairs)
    }
}

/// The pairs of a scan or batch get: each its value or its lock; any other key error fails
/// the call.
pub(crate) fn reads_of(
    store_id: u64,
    method: &'static str,
    pairs: Vec<kvrpcpb::KvPair>,
) -> Result<Vec<Read>, KvError> {
    pairs
        .into_iter()
        .map(|pair| match pair.error.map(key_error_of) {
            None => Ok(Read::Value { key: pair.key, value: pair.value }),
            Some(KeyError::Locked(lock)) => Ok(Read::Locked(lock)),
            Some(error) => Err(KvError::Key { method, store_id, error: Box::new(error) }),
        })
        .collect()
}
