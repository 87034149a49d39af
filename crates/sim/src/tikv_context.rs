//! What every `tikvpb.Tikv` API of a store shares (the lock APIs of `kv.rs`, the reads of
//! `read.rs`): the request context check (RegionNotFound, NotLeader with the leader,
//! EpochNotMatch, as TiKV answers them), `KeyNotInRegion`, and a lock as the wire's `LockInfo`.

use bytes::Bytes;
use kvfeed_proto::errorpb;
use kvfeed_proto::kvrpcpb::{self, Context, LockInfo};

use crate::mvcc::{Lock, Op};
use crate::region::RegionMeta;
use crate::state::ClusterState;

pub(crate) fn lock_info(key: &Bytes, l: &Lock) -> LockInfo {
    LockInfo {
        primary_lock: l.primary.clone(),
        lock_version: l.start_ts,
        key: key.clone(),
        lock_ttl: l.ttl_ms,
        txn_size: l.txn_size,
        lock_type: match l.op {
            Op::Put => kvrpcpb::Op::Put as i32,
            Op::Delete => kvrpcpb::Op::Del as i32,
        },
        use_async_commit: l.async_commit,
        min_commit_ts: l.min_commit_ts,
        secondaries: l.secondaries.clone(),
        ..LockInfo::default()
    }
}

/// Checks a request's context against `store`: the region it names, or the region error.
pub(crate) fn check_context(
    st: &ClusterState,
    store: u64,
    ctx: Option<&Context>,
) -> Result<RegionMeta, Box<errorpb::Error>> {
    let region_id = ctx.map_or(0, |c| c.region_id);
    let Some(region) = st.regions.get(region_id).filter(|r| r.peer_on(store).is_some()) else {
        return Err(Box::new(errorpb::Error {
            message: format!("region {region_id} not found"),
            region_not_found: Some(errorpb::RegionNotFound { region_id }),
            ..errorpb::Error::default()
        }));
    };
    if region.leader_store != store {
        return Err(Box::new(errorpb::Error {
            message: "not leader".to_owned(),
            not_leader: Some(errorpb::NotLeader { region_id, leader: region.leader_proto() }),
            ..errorpb::Error::default()
        }));
    }
    if ctx.and_then(|c| c.region_epoch.as_ref()) != Some(&region.epoch()) {
        return Err(Box::new(errorpb::Error {
            message: "epoch not match".to_owned(),
            epoch_not_match: Some(errorpb::EpochNotMatch {
                current_regions: vec![region.to_proto()],
            }),
            ..errorpb::Error::default()
        }));
    }
    Ok(region.clone())
}

pub(crate) fn key_not_in_region(key: &Bytes, r: &RegionMeta) -> errorpb::Error {
    errorpb::Error {
        message: "key not in region".to_owned(),
        key_not_in_region: Some(errorpb::KeyNotInRegion {
            key: key.clone(),
            region_id: r.id,
            start_key: r.start.clone(),
            end_key: r.end.clone(),
        }),
        ..errorpb::Error::default()
    }
}
