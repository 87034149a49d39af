//! What the transport hands to the feed: [`StreamEvent`]s and the domain types inside them.
//!
//! Region metadata is regioncache's vocabulary ([`Region`], [`RegionEpoch`], [`Peer`]); the
//! conversions from the prost types of `kvfeed_proto::cdcpb` and `metapb` live here. They move, never
//! copy, the key and value bytes: a [`Row`]'s `key`, `value` and `old_value` are slices of the
//! received frame, and a `Vec` of wire rows becomes a `Vec<Row>` in place (the two types have the
//! same size and alignment, see the unit test `row_layout_allows_in_place_conversion`). Enum
//! values a newer TiKV may send are kept as typed `Unknown(i32)` values, never a panic.

use alloc::string::String;
use alloc::vec::Vec;

use bytes::Bytes;
use kvfeed_proto::{cdcpb, errorpb, metapb};
use kvfeed_regioncache::{Peer, PeerRole, Region, RegionEpoch};
use kvfeed_span::Span;

use crate::error::StreamError;

/// One item of the transport's event channel.
///
/// Events of one stream arrive in the order the store sent them. Events of different streams
/// (different stores, or different streams to one store) interleave arbitrarily.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Something happened to one subscribed region.
    Region {
        /// The store whose stream carried the event.
        store_id: u64,
        /// The subscription (the request id it was registered with).
        request_id: u64,
        /// The region.
        region_id: u64,
        /// What happened.
        event: RegionEvent,
    },
    /// A batch of regions whose resolved ts reached at least `ts`.
    Resolved {
        /// The store whose stream carried the batch.
        store_id: u64,
        /// The subscription. On a multiplexed (`EventFeedV2`) stream this is the batch's own
        /// request id; on an `EventFeed` stream, which belongs to exactly one subscription, TiKV
        /// sends 0 and the transport puts the owning subscription here.
        request_id: u64,
        /// The regions of the batch (never empty).
        regions: Vec<u64>,
        /// A lower bound of the resolved ts of every listed region. It may be lower than a value
        /// already seen for a region; the feed keeps the maximum.
        ts: u64,
    },
    /// The marker [`Transport::deregister`](crate::Transport::deregister) of one region puts on
    /// the channel: every event of the registrations it removed came before it, and none
    /// follows. A registration of the same pair made after it is seen is a new one.
    Deregistered {
        /// The store the region was deregistered from.
        store_id: u64,
        /// The subscription.
        request_id: u64,
        /// The region.
        region_id: u64,
    },
    /// The stream carrying this region failed: TiKV no longer serves the registration, and the
    /// region must be registered again (normally after re-resolving its leader). Reported exactly
    /// once per registration, and never for a registration that ended otherwise (a region error
    /// event from TiKV, or a deregistration).
    RegionFailed {
        /// The store whose stream failed.
        store_id: u64,
        /// The subscription.
        request_id: u64,
        /// The region.
        region_id: u64,
        /// Why the stream failed.
        cause: StreamError,
    },
}

/// Bytes charged per event and per row beyond their keys and values (the structures around
/// them), for the event channel's byte budget.
const EVENT_OVERHEAD: usize = 64;
const ROW_OVERHEAD: usize = 64;

impl StreamEvent {
    /// The bytes this event holds, as the event channel's byte budget counts them: keys,
    /// values and old values of its rows, a fixed overhead per row and per event, 8 bytes per
    /// region of a resolved-ts batch.
    pub fn footprint(&self) -> usize {
        EVENT_OVERHEAD
            + match self {
                Self::Region { event: RegionEvent::Rows(rows), .. } => rows
                    .iter()
                    .map(|row| ROW_OVERHEAD + row.key.len() + row.value.len() + row.old_value.len())
                    .sum(),
                Self::Resolved { regions, .. } => regions.len() * 8,
                _ => 0,
            }
    }
}

/// What happened to one subscribed region.
#[derive(Clone, Debug, PartialEq)]
pub enum RegionEvent {
    /// Rows of the incremental scan or of live writes, in TiKV's order (never empty).
    Rows(Vec<Row>),
    /// TiKV ended the registration with this error. Every error but
    /// [`RegionError::DuplicateRequest`] means TiKV has already dropped the registration, and the
    /// transport forgets it too.
    ///
    /// TiKV also answers each deregistered region with [`RegionError::RegionNotFound`]; those
    /// answers, and every other event of a deregistered registration, are dropped by the
    /// transport, so a registration made again on the same stream never sees them.
    Error(RegionError),
    /// The deprecated per-region resolved ts (sent only to clients older than 4.0.8; kvfeed
    /// announces 8.1.0, so TiKV sends batched [`StreamEvent::Resolved`] instead).
    ResolvedTs(u64),
}

/// One row event: a prewrite, commit, rollback, committed row or the end-of-scan marker.
///
/// `key` is the raw (not memcomparable-encoded) user key. The three byte fields share the received
/// frame's buffer: holding a row keeps that frame alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Start ts of the transaction.
    pub start_ts: u64,
    /// Commit ts; 0 for prewrites and rollbacks.
    pub commit_ts: u64,
    /// What kind of row event this is.
    pub kind: RowKind,
    /// Put or delete (unspecified for rollbacks and the end-of-scan marker).
    pub op: RowOp,
    /// The raw user key.
    pub key: Bytes,
    /// The value (a commit may carry none; take it from the matching prewrite).
    pub value: Bytes,
    /// The previous value.
    pub old_value: Bytes,
    /// Bit flags naming where the transaction came from.
    pub txn_source: u64,
    /// Flush generation of pipelined DML.
    pub generation: u64,
}

/// The kind of a [`Row`] (the wire's `Event.LogType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// `UNKNOWN` (0) on the wire: TiKV never sends it for a real row.
    Unspecified,
    /// A lock was written; pair it with the commit or rollback of the same key and start ts.
    Prewrite,
    /// A two-phase commit.
    Commit,
    /// Drops the matching prewrite.
    Rollback,
    /// A self-contained committed row (incremental scan, 1PC).
    Committed,
    /// The incremental scan of the region is complete.
    Initialized,
    /// A value this client does not know (sent by a newer TiKV, or garbage).
    Unknown(i32),
}

/// The operation of a [`Row`] (the wire's `Event.Row.OpType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowOp {
    /// `UNKNOWN` (0) on the wire: what rollbacks and end-of-scan markers carry.
    Unspecified,
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
    /// A value this client does not know.
    Unknown(i32),
}

/// Why TiKV ended a region's registration (the wire's `cdcpb.Error`, which has exactly one field
/// set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The peer is not the leader; `leader` is the new leader when TiKV knows it (regioncache's
    /// [`Peer`], ready for `PdRegionSource::on_not_leader`).
    NotLeader {
        /// The new leader, if known.
        leader: Option<Peer>,
    },
    /// The region split or merged: `current_regions` are the regions now covering the old range
    /// (empty after a merge), as regioncache's validated [`Region`]s without leaders (a region
    /// that breaks a `Region` invariant is left out).
    EpochNotMatch {
        /// The regions now covering the old range.
        current_regions: Vec<Region>,
    },
    /// The region is not on this store, or any other internal TiKV error, or the answer to a
    /// deregistration.
    RegionNotFound,
    /// The same (request id, region id) is already registered on this stream; the original
    /// registration is still alive.
    DuplicateRequest,
    /// The request needs a newer TiKV.
    Compatibility {
        /// The TiKV version the request needs.
        required_version: String,
    },
    /// The cluster id sent in the request header is not the store's.
    ClusterIdMismatch {
        /// The store's cluster id.
        current: u64,
        /// The cluster id the request carried.
        request: u64,
    },
    /// The store is overloaded (too many pending incremental scans).
    ServerIsBusy {
        /// TiKV's reason.
        reason: String,
        /// Suggested backoff before retrying (0 when TiKV gives none).
        backoff_ms: u64,
    },
    /// The store's sink or memory quota is full (TiKV 8.4 and later).
    Congested,
    /// No known field was set: an error kind this client does not know (from the lock RPCs also
    /// a kind CDC streams never send, such as `KeyNotInRegion`).
    Unknown,
}

impl RowKind {
    /// The kind of a wire `LogType` value.
    pub fn from_wire(value: i32) -> Self {
        match value {
            0 => Self::Unspecified,
            1 => Self::Prewrite,
            2 => Self::Commit,
            3 => Self::Rollback,
            4 => Self::Committed,
            5 => Self::Initialized,
            other => Self::Unknown(other),
        }
    }
}

impl RowOp {
    /// The operation of a wire `OpType` value.
    pub fn from_wire(value: i32) -> Self {
        match value {
            0 => Self::Unspecified,
            1 => Self::Put,
            2 => Self::Delete,
            other => Self::Unknown(other),
        }
    }
}

impl Row {
    /// Converts a wire row, moving its bytes.
    pub fn from_wire(row: cdcpb::event::Row) -> Self {
        Self {
            start_ts: row.start_ts,
            commit_ts: row.commit_ts,
            kind: RowKind::from_wire(row.r#type),
            op: RowOp::from_wire(row.op_type),
            key: row.key,
            value: row.value,
            old_value: row.old_value,
            txn_source: row.txn_source,
            generation: row.generation,
        }
    }
}

impl RegionError {
    /// Converts a wire error. TiKV sets exactly one field; should several be set, the first in
    /// field order wins.
    pub fn from_wire(error: cdcpb::Error) -> Self {
        if let Some(not_leader) = error.not_leader {
            // An empty peer (id 0) means "leader unknown", as regioncache's converter reads it.
            Self::NotLeader { leader: leader_from_wire(not_leader.leader) }
        } else if error.region_not_found.is_some() {
            Self::RegionNotFound
        } else if let Some(epoch) = error.epoch_not_match {
            Self::EpochNotMatch {
                current_regions: epoch
                    .current_regions
                    .into_iter()
                    .filter_map(region_from_wire)
                    .collect(),
            }
        } else if error.duplicate_request.is_some() {
            Self::DuplicateRequest
        } else if let Some(compatibility) = error.compatibility {
            Self::Compatibility { required_version: compatibility.required_version }
        } else if let Some(mismatch) = error.cluster_id_mismatch {
            Self::ClusterIdMismatch { current: mismatch.current, request: mismatch.request }
        } else if let Some(busy) = error.server_is_busy {
            Self::ServerIsBusy { reason: busy.reason, backoff_ms: busy.backoff_ms }
        } else if error.congested.is_some() {
            Self::Congested
        } else {
            Self::Unknown
        }
    }

    /// Converts the region error of a unary `tikvpb.Tikv` answer (`errorpb.Error`): the kinds
    /// a CDC stream also sends keep their variant; the others (`KeyNotInRegion`, `StoreNotMatch`,
    /// `StaleCommand`, ...) are [`RegionError::Unknown`], their `message` saying which.
    pub(crate) fn from_errorpb(error: errorpb::Error) -> Self {
        if let Some(not_leader) = error.not_leader {
            Self::NotLeader { leader: leader_from_wire(not_leader.leader) }
        } else if error.region_not_found.is_some() {
            Self::RegionNotFound
        } else if let Some(epoch) = error.epoch_not_match {
            Self::EpochNotMatch {
                current_regions: epoch
                    .current_regions
                    .into_iter()
                    .filter_map(region_from_wire)
                    .collect(),
            }
        } else if let Some(busy) = error.server_is_busy {
            Self::ServerIsBusy { reason: busy.reason, backoff_ms: busy.backoff_ms }
        } else {
            Self::Unknown
        }
    }

    /// Whether TiKV dropped the registration with this error. Only a duplicate request leaves the
    /// original registration alive.
    pub fn ends_registration(&self) -> bool {
        !matches!(self, Self::DuplicateRequest)
    }
}

/// The leader a `NotLeader` names: an absent peer, or an empty one (id 0 or store id 0), means
/// "leader unknown", as the region cache reads PD's answers. A role this client does not know
/// is read as a voter (the peer leads, after all).
pub(crate) fn leader_from_wire(peer: Option<metapb::Peer>) -> Option<Peer> {
    peer.filter(|peer| peer.id != 0 && peer.store_id != 0).map(peer_from_wire)
}

/// A wire peer.
fn peer_from_wire(peer: metapb::Peer) -> Peer {
    Peer {
        id: peer.id,
        store_id: peer.store_id,
        role: role_from_wire(peer.role),
        is_witness: peer.is_witness,
    }
}

/// The wire form of a peer.
pub(crate) fn peer_to_wire(peer: Peer) -> metapb::Peer {
    let role = match peer.role {
        PeerRole::Voter => metapb::PeerRole::Voter,
        PeerRole::Learner => metapb::PeerRole::Learner,
        PeerRole::IncomingVoter => metapb::PeerRole::IncomingVoter,
        PeerRole::DemotingVoter => metapb::PeerRole::DemotingVoter,
    };
    metapb::Peer {
        id: peer.id,
        store_id: peer.store_id,
        role: role as i32,
        is_witness: peer.is_witness,
    }
}

/// A wire `PeerRole`.
fn role_from_wire(role: i32) -> PeerRole {
    match metapb::PeerRole::try_from(role) {
        Ok(metapb::PeerRole::Learner) => PeerRole::Learner,
        Ok(metapb::PeerRole::IncomingVoter) => PeerRole::IncomingVoter,
        Ok(metapb::PeerRole::DemotingVoter) => PeerRole::DemotingVoter,
        Ok(metapb::PeerRole::Voter) | Err(_) => PeerRole::Voter,
    }
}

/// A region of an `EpochNotMatch`, as a validated [`Region`] (no leader: TiKV names none), or
/// `None` when it breaks a `Region` invariant (a zero id, an empty range, no or zero peers, no
/// epoch): such a region is dropped, never a panic.
pub(crate) fn region_from_wire(region: metapb::Region) -> Option<Region> {
    let epoch = region.region_epoch?;
    let span = Span::from_bytes(&region.start_key, &region.end_key).ok()?;
    let peers = region.peers.into_iter().map(peer_from_wire).collect();
    Region::new(region.id, span, epoch_from_wire(epoch), peers, None).ok()
}

/// A wire epoch.
pub(crate) fn epoch_from_wire(epoch: metapb::RegionEpoch) -> RegionEpoch {
    RegionEpoch::new(epoch.version, epoch.conf_ver)
}

/// The wire form of an epoch.
pub(crate) fn epoch_to_wire(epoch: RegionEpoch) -> metapb::RegionEpoch {
    metapb::RegionEpoch { conf_ver: epoch.conf_ver, version: epoch.version }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_layout_allows_in_place_conversion() {
        // `Vec<wire Row>` -> `Vec<Row>` reuses the allocation when the sizes divide evenly and
        // the alignments match (std's in-place collect); keep the domain row that lean.
        let wire = core::mem::size_of::<cdcpb::event::Row>();
        let domain = core::mem::size_of::<Row>();
        assert_eq!(wire % domain, 0, "wire row {wire} B, domain row {domain} B");
        assert_eq!(core::mem::align_of::<cdcpb::event::Row>(), core::mem::align_of::<Row>());
    }

    #[test]
    fn unknown_enum_values_are_typed() {
        assert_eq!(RowKind::from_wire(5), RowKind::Initialized);
        assert_eq!(RowKind::from_wire(0), RowKind::Unspecified);
        assert_eq!(RowKind::from_wire(42), RowKind::Unknown(42));
        assert_eq!(RowKind::from_wire(-1), RowKind::Unknown(-1));
        assert_eq!(RowOp::from_wire(2), RowOp::Delete);
        assert_eq!(RowOp::from_wire(7), RowOp::Unknown(7));
    }

    #[test]
    fn region_errors_map_to_typed_values() {
        let not_leader = cdcpb::Error {
            not_leader: Some(errorpb::NotLeader {
                region_id: 3,
                leader: Some(metapb::Peer { id: 9, store_id: 4, ..metapb::Peer::default() }),
            }),
            ..cdcpb::Error::default()
        };
        assert_eq!(
            RegionError::from_wire(not_leader),
            RegionError::NotLeader { leader: Some(Peer::voter(9, 4)) }
        );
        let unknown_leader = cdcpb::Error {
            not_leader: Some(errorpb::NotLeader {
                region_id: 3,
                leader: Some(metapb::Peer::default()),
            }),
            ..cdcpb::Error::default()
        };
        assert_eq!(RegionError::from_wire(unknown_leader), RegionError::NotLeader { leader: None });
        let busy = cdcpb::Error {
            server_is_busy: Some(errorpb::ServerIsBusy {
                reason: "too many pending incremental scans".into(),
                backoff_ms: 20,
                ..errorpb::ServerIsBusy::default()
            }),
            ..cdcpb::Error::default()
        };
        assert_eq!(
            RegionError::from_wire(busy),
            RegionError::ServerIsBusy {
                reason: "too many pending incremental scans".into(),
                backoff_ms: 20
            }
        );
        let mismatch = cdcpb::Error {
            cluster_id_mismatch: Some(cdcpb::ClusterIdMismatch { current: 1, request: 2 }),
            ..cdcpb::Error::default()
        };
        assert_eq!(
            RegionError::from_wire(mismatch),
            RegionError::ClusterIdMismatch { current: 1, request: 2 }
        );
        let split = cdcpb::Error {
            epoch_not_match: Some(errorpb::EpochNotMatch {
                current_regions: alloc::vec![
                    metapb::Region {
                        id: 5,
                        start_key: Bytes::from_static(b"a"),
                        end_key: Bytes::new(),
                        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 2 }),
                        peers: alloc::vec![metapb::Peer {
                            id: 6,
                            store_id: 2,
                            ..metapb::Peer::default()
                        }],
                        ..metapb::Region::default()
                    },
                    metapb::Region {
                        // No peers: not a valid region, left out.
                        id: 8,
                        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 2 }),
                        ..metapb::Region::default()
                    }
                ],
            }),
            ..cdcpb::Error::default()
        };
        let RegionError::EpochNotMatch { current_regions } = RegionError::from_wire(split) else {
            panic!("not an EpochNotMatch");
        };
        assert_eq!(current_regions.len(), 1);
        assert_eq!(current_regions[0].id(), 5);
        assert_eq!(current_regions[0].start().as_bytes(), b"a");
        assert!(current_regions[0].end().is_empty());
        assert_eq!(current_regions[0].epoch(), RegionEpoch { conf_ver: 1, version: 2 });
        assert_eq!(current_regions[0].peers(), [Peer::voter(6, 2)]);
        assert_eq!(RegionError::from_wire(cdcpb::Error::default()), RegionError::Unknown);
        let congested = cdcpb::Error {
            congested: Some(cdcpb::Congested { region_id: 1 }),
            ..cdcpb::Error::default()
        };
        assert_eq!(RegionError::from_wire(congested), RegionError::Congested);
        assert!(!RegionError::DuplicateRequest.ends_registration());
        assert!(RegionError::RegionNotFound.ends_registration());
    }
}
