//! The `tikvpb.Tikv` snapshot reads of one store: `KvGet`, `KvScan`, `KvBatchGet`, with TiKV's
//! semantics (wire reference §10).
//!
//! The request's `Context` is checked as for the lock APIs (RegionNotFound, NotLeader,
//! EpochNotMatch); a key outside the region is `KeyNotInRegion`. Keys are raw. A key locked by a
//! transaction that started at or before the read ts (and whose min commit ts does not put it
//! after the read) is answered with `KeyError.locked` (per pair for scans and batch gets) and
//! its value is not read: the reader resolves the lock and reads again. A scan returns at most
//! `limit` pairs (values and locked keys alike) in key order, from `start_key` to the
//! request's `end_key` or the region's end, whichever comes first.
//!
//! Unlike TiKV, which serves a read below the GC safe point from what GC left, the simulator
//! refuses one (`KeyError.abort` naming the safe point, counted in
//! [`CdcStats::reads_below_safe_point`](crate::CdcStats)): a client that asks has a bug that TiKV
//! would hide.

use bytes::Bytes;
use kvfeed_proto::kvrpcpb::{self, KeyError};
use kvfeed_span::key::decode;

use crate::mvcc::ReadAt;
use crate::region::RegionMeta;
use crate::state::ClusterState;
use crate::tikv_context::{check_context, key_not_in_region, lock_info};

/// A read's failure before any key is read: a region error or a key error of the whole
/// request.
pub(crate) enum Refusal {
    Region(Box<kvfeed_proto::errorpb::Error>),
    Key(Box<KeyError>),
}

/// Checks a read's context and ts: the region read, or why the read is refused.
fn admit(
    st: &mut ClusterState,
    store: u64,
    ctx: Option<&kvrpcpb::Context>,
    version: u64,
) -> Result<RegionMeta, Refusal> {
    let region = check_context(st, store, ctx).map_err(Refusal::Region)?;
    let safe_point = st.gc.safe_point();
    if version < safe_point {
        if let Some(s) = st.stores.get_mut(&store) {
            s.stats.reads_below_safe_point += 1;
        }
        return Err(Refusal::Key(Box::new(KeyError {
            abort: format!("read ts {version} is below the GC safe point {safe_point}"),
            ..KeyError::default()
        })));
    }
    Ok(region)
}

/// One key as a pair: its value, or the lock that blocks it; `None` when it has no value.
fn pair_of(st: &ClusterState, key: &Bytes, version: u64) -> Option<kvrpcpb::KvPair> {
    match st.mvcc.read_at(key, version) {
        ReadAt::Value(value) => {
            Some(kvrpcpb::KvPair { key: key.clone(), value, ..Default::default() })
        }
        ReadAt::Missing => None,
        ReadAt::Locked(lock) => Some(kvrpcpb::KvPair {
            key: key.clone(),
            error: Some(KeyError { locked: Some(lock_info(key, lock)), ..KeyError::default() }),
            ..Default::default()
        }),
    }
}

/// `KvGet`.
pub(crate) fn get(
    st: &mut ClusterState,
    store: u64,
    req: &kvrpcpb::GetRequest,
) -> kvrpcpb::GetResponse {
    let region = match admit(st, store, req.context.as_ref(), req.version) {
        Ok(region) => region,
        Err(refusal) => {
            return refused(refusal, |region_error, error| kvrpcpb::GetResponse {
                region_error,
                error,
                ..Default::default()
            });
        }
    };
    if !region.contains_raw(&req.key) {
        return kvrpcpb::GetResponse {
            region_error: Some(key_not_in_region(&req.key, &region)),
            ..Default::default()
        };
    }
    match pair_of(st, &req.key, req.version) {
        None => kvrpcpb::GetResponse { not_found: true, ..Default::default() },
        Some(kvrpcpb::KvPair { error: Some(error), .. }) => {
            kvrpcpb::GetResponse { error: Some(error), ..Default::default() }
        }
        Some(pair) => kvrpcpb::GetResponse { value: pair.value, ..Default::default() },
    }
}

/// `KvBatchGet`: the keys found or locked, in the order asked (missing keys left out).
pub(crate) fn batch_get(
    st: &mut ClusterState,
    store: u64,
    req: &kvrpcpb::BatchGetRequest,
) -> kvrpcpb::BatchGetResponse {
    let region = match admit(st, store, req.context.as_ref(), req.version) {
        Ok(region) => region,
        Err(refusal) => {
            return refused(refusal, |region_error, error| kvrpcpb::BatchGetResponse {
                region_error,
                error,
                ..Default::default()
            });
        }
    };
    if let Some(outside) = req.keys.iter().find(|key| !region.contains_raw(key)) {
        return kvrpcpb::BatchGetResponse {
            region_error: Some(key_not_in_region(outside, &region)),
            ..Default::default()
        };
    }
    let pairs = req.keys.iter().filter_map(|key| pair_of(st, key, req.version)).collect();
    kvrpcpb::BatchGetResponse { pairs, ..Default::default() }
}

/// `KvScan` (forward; `reverse` and `sample_step` are not simulated and refused).
pub(crate) fn scan(
    st: &mut ClusterState,
    store: u64,
    req: &kvrpcpb::ScanRequest,
) -> kvrpcpb::ScanResponse {
    let region = match admit(st, store, req.context.as_ref(), req.version) {
        Ok(region) => region,
        Err(refusal) => {
            return refused(refusal, |region_error, error| kvrpcpb::ScanResponse {
                region_error,
                error,
                ..Default::default()
            });
        }
    };
    if req.reverse || req.sample_step > 0 {
        let error = KeyError {
            abort: "the simulator scans forward only, without sampling".to_owned(),
            ..KeyError::default()
        };
        return kvrpcpb::ScanResponse { error: Some(error), ..Default::default() };
    }
    if !req.start_key.is_empty() && !region.contains_raw(&req.start_key) {
        return kvrpcpb::ScanResponse {
            region_error: Some(key_not_in_region(&req.start_key, &region)),
            ..Default::default()
        };
    }
    // Raw bounds for the map walk: the request's start (or the region's), the request's end;
    // every key is also checked against the region (whose bounds are encoded).
    let region_start = decode(&region.start).ok().filter(|_| !region.start.is_empty());
    let start =
        if req.start_key.is_empty() { region_start.as_deref() } else { Some(&req.start_key[..]) };
    let end = (!req.end_key.is_empty()).then_some(&req.end_key[..]);
    if end.is_some_and(|end| start.is_some_and(|start| end <= start)) {
        // An empty range: nothing to read (TiKV answers no pairs).
        return kvrpcpb::ScanResponse::default();
    }
    let limit = if req.limit == 0 { usize::MAX } else { req.limit as usize };
    let pairs = st
        .mvcc
        .keys_in(start, end)
        .skip_while(|key| !region.contains_raw(key))
        .take_while(|key| region.contains_raw(key))
        .filter_map(|key| pair_of(st, key, req.version))
        .take(limit)
        .map(|mut pair| {
            if req.key_only {
                pair.value = Bytes::new();
            }
            pair
        })
        .collect();
    kvrpcpb::ScanResponse { pairs, ..Default::default() }
}

fn refused<T>(
    refusal: Refusal,
    build: impl FnOnce(Option<kvfeed_proto::errorpb::Error>, Option<KeyError>) -> T,
) -> T {
    match refusal {
        Refusal::Region(error) => build(Some(*error), None),
        Refusal::Key(error) => build(None, Some(*error)),
    }
}
