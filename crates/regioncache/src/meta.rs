//! Domain types of cluster metadata: regions, their epochs and peers, and stores.
//!
//! These are what the rest of kvfeed sees of PD's `metapb` messages, validated once at the
//! boundary ([`crate::convert`]): a [`Region`] always has a non-zero id, a non-empty key range,
//! at least one peer and, if it names a leader, a leader among its peers.

use core::fmt;
use std::sync::Arc;

use kvfeed_span::{EncodedKey, Span};
use smallvec::SmallVec;

/// The id of a region (a raft group), unique in a cluster and never reused.
pub type RegionId = u64;
/// The id of a store (a TiKV or TiFlash process), unique in a cluster and never reused.
pub type StoreId = u64;
/// The id of a peer (one replica of a region), unique in a cluster.
pub type PeerId = u64;

/// The version pair of a region.
///
/// `version` grows on every split and merge, so along any key the region covering it at a later
/// time has a version at least as large; `conf_ver` grows on membership changes of one region.
///
/// **Staleness is not the derived order.** As in TiKV and client-go, an epoch is stale against
/// another if *either* field is lower ([`RegionEpoch::is_stale_against`]). Two epochs may each be
/// stale against the other (one field up, the other down: an inconsistent report); the cache
/// then keeps what it holds. The derived `Ord` (by `version`, then `conf_ver`) is only a total
/// order for sorting and ordered maps (kept because [`RegionVerId`] keys are sorted elsewhere);
/// never use it to decide which epoch is newer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionEpoch {
    /// Bumped on split and merge.
    pub version: u64,
    /// Bumped on membership (peer) changes.
    pub conf_ver: u64,
}

impl RegionEpoch {
    /// The epoch `{version, conf_ver}`.
    pub const fn new(version: u64, conf_ver: u64) -> Self {
        Self { version, conf_ver }
    }

    /// Whether this epoch is stale against `other`: either field is lower. A region reported
    /// with such an epoch predates (on that field) what `other` describes and must not replace
    /// it. Note that `a.is_stale_against(b)` and `b.is_stale_against(a)` may both hold.
    pub const fn is_stale_against(&self, other: &RegionEpoch) -> bool {
        self.version < other.version || self.conf_ver < other.conf_ver
    }

    /// Whether this epoch is at least `other` on both fields (neither is lower): the opposite
    /// of [`RegionEpoch::is_stale_against`].
    pub const fn covers(&self, other: &RegionEpoch) -> bool {
        !self.is_stale_against(other)
    }
}

/// One version of a region: what a request to TiKV names, and what region errors refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionVerId {
    /// The region.
    pub id: RegionId,
    /// Its epoch when this version was seen.
    pub epoch: RegionEpoch,
}

/// The raft role of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// A voting member; only voters become leaders.
    Voter,
    /// A non-voting replica (TiFlash replicas are learners).
    Learner,
    /// A learner being promoted during a joint membership change.
    IncomingVoter,
    /// A voter being demoted during a joint membership change.
    DemotingVoter,
}

/// One replica of a region, placed on one store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The peer id (non-zero).
    pub id: PeerId,
    /// The store holding it (non-zero).
    pub store_id: StoreId,
    /// Its raft role.
    pub role: PeerRole,
    /// Whether it is a witness (holds no data, never serves reads or CDC).
    pub is_witness: bool,
}

impl Peer {
    /// A voter on `store_id`.
    pub const fn voter(id: PeerId, store_id: StoreId) -> Self {
        Self { id, store_id, role: PeerRole::Voter, is_witness: false }
    }

    /// Whether this peer could be a raft leader (and so serve CDC): a voter that is not a
    /// witness. Learners, TiFlash replicas among them, never lead.
    pub fn can_lead(&self) -> bool {
        !self.is_witness && matches!(self.role, PeerRole::Voter | PeerRole::IncomingVoter)
    }
}

/// A region: a half-open range of encoded keys served by one raft group.
///
/// Invariants, checked by [`Region::new`]: the id is non-zero, the range is non-empty (an empty
/// start is minus infinity, an empty end plus infinity), there is at least one peer, peer ids are
/// non-zero and distinct, and the leader, when known, is one of the peers.
#[derive(Clone, PartialEq, Eq)]
pub struct Region {
    id: RegionId,
    span: Span,
    epoch: RegionEpoch,
    /// Inline up to three peers (the usual replica count): a cache of a million regions saves
    /// an allocation each.
    peers: SmallVec<[Peer; 3]>,
    /// Index of the leader in `peers`; always in bounds.
    leader: Option<usize>,
}

/// Why region metadata was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRegion {
    /// The region id is zero.
    #[error("region id is zero")]
    ZeroId,
    /// The region has no epoch.
    #[error("region has no epoch")]
    MissingEpoch,
    /// `start >= end` (with an empty end meaning plus infinity).
    #[error("region range [{start:?}, {end:?}) is empty")]
    EmptyRange {
        /// The start key given.
        start: EncodedKey,
        /// The end key given.
        end: EncodedKey,
    },
    /// The region lists no peer.
    #[error("region has no peers")]
    NoPeers,
    /// A peer has id zero or store id zero.
    #[error("peer {peer_id} on store {store_id} has a zero id")]
    ZeroPeerId {
        /// The peer id given.
        peer_id: PeerId,
        /// The store id given.
        store_id: StoreId,
    },
    /// Two peers share an id, or two peers share a store.
    #[error("peer {peer_id} or its store appears twice")]
    DuplicatePeer {
        /// The repeated peer.
        peer_id: PeerId,
    },
    /// A peer role value this client does not know.
    #[error("peer {peer_id} has unknown role {role}")]
    UnknownRole {
        /// The peer.
        peer_id: PeerId,
        /// The raw enum value.
        role: i32,
    },
    /// The leader named is not among the region's peers.
    #[error("leader peer {peer_id} is not a peer of the region")]
    LeaderNotInPeers {
        /// The leader peer id given.
        peer_id: PeerId,
    },
}

impl Region {
    /// Builds a region, checking the invariants listed on [`Region`]. `leader` names the leader
    /// by peer id (`None` when unknown).
    pub fn new(
        id: RegionId,
        span: Span,
        epoch: RegionEpoch,
        peers: Vec<Peer>,
        leader: Option<PeerId>,
    ) -> Result<Self, InvalidRegion> {
        if id == 0 {
            return Err(InvalidRegion::ZeroId);
        }
        if peers.is_empty() {
            return Err(InvalidRegion::NoPeers);
        }
        for (i, peer) in peers.iter().enumerate() {
            if peer.id == 0 || peer.store_id == 0 {
                return Err(InvalidRegion::ZeroPeerId {
                    peer_id: peer.id,
                    store_id: peer.store_id,
                });
            }
            if peers[..i].iter().any(|p| p.id == peer.id || p.store_id == peer.store_id) {
                return Err(InvalidRegion::DuplicatePeer { peer_id: peer.id });
            }
        }
        let leader = match leader {
            None => None,
            Some(peer_id) => Some(
                peers
                    .iter()
                    .position(|p| p.id == peer_id)
                    .ok_or(InvalidRegion::LeaderNotInPeers { peer_id })?,
            ),
        };
        Ok(Self { id, span, epoch, peers: SmallVec::from_vec(peers), leader })
    }

    /// The region id.
    pub fn id(&self) -> RegionId {
        self.id
    }

    /// The key range `[start, end)`.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The first key (inclusive; empty is minus infinity).
    pub fn start(&self) -> &EncodedKey {
        self.span.start()
    }

    /// The end key (exclusive; empty is plus infinity).
    pub fn end(&self) -> &EncodedKey {
        self.span.end()
    }

    /// The epoch.
    pub fn epoch(&self) -> RegionEpoch {
        self.epoch
    }

    /// This version of the region.
    pub fn ver_id(&self) -> RegionVerId {
        RegionVerId { id: self.id, epoch: self.epoch }
    }

    /// The peers (never empty).
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The leader, if known.
    pub fn leader(&self) -> Option<&Peer> {
        self.leader.map(|i| &self.peers[i])
    }

    /// The peer with id `peer_id`.
    pub fn peer(&self, peer_id: PeerId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == peer_id)
    }

    /// Whether the encoded `key` lies in the region.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.span.contains_key(key)
    }

    /// Index of the leader in [`Region::peers`].
    pub(crate) fn leader_index(&self) -> Option<usize> {
        self.leader
    }

    /// Sets the leader to `peers[index]` (`None` forgets it).
    pub(crate) fn set_leader_index(&mut self, index: Option<usize>) {
        debug_assert!(index.is_none_or(|i| i < self.peers.len()));
        self.leader = index.filter(|&i| i < self.peers.len());
    }
}

impl AsRef<Span> for Region {
    fn as_ref(&self) -> &Span {
        &self.span
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("id", &self.id)
            .field("span", &self.span)
            .field("epoch", &self.epoch)
            .field("peers", &self.peers)
            .field("leader", &self.leader().map(|p| p.id))
            .finish()
    }
}

/// The state of a store as PD reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreState {
    /// Serving.
    Up,
    /// Being decommissioned; still serving its remaining peers.
    Offline,
    /// Gone for good: its id is never used again.
    Tombstone,
}

/// A TiKV (or TiFlash) store.
///
/// Stores are identified by [`Store::id`], never by address: a restarted store may come back at
/// another address, and an address may later be served by another store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// The store id (non-zero).
    pub id: StoreId,
    /// The gRPC address, `host:port` (no scheme).
    pub address: Arc<str>,
    /// The state.
    pub state: StoreState,
    /// The TiKV version (semver), as reported by the store.
    pub version: Arc<str>,
    /// The labels, `key=value` pairs such as `engine=tiflash`.
    pub labels: Vec<(String, String)>,
}

impl Store {
    /// Whether the store runs TiFlash (label `engine=tiflash`). CDC never talks to TiFlash.
    pub fn is_tiflash(&self) -> bool {
        self.labels.iter().any(|(k, v)| k == "engine" && v.eq_ignore_ascii_case("tiflash"))
    }

    /// Whether a CDC client may send requests to it: not a tombstone, not TiFlash, and with an
    /// address.
    pub fn is_usable(&self) -> bool {
        self.state != StoreState::Tombstone && !self.is_tiflash() && !self.address.is_empty()
    }
}
