//! Conversions from PD's protobuf messages to the domain types, with validation.
//!
//! This is the only place that turns `metapb`/`pdpb` messages into [`Region`]s, [`Peer`]s and
//! [`Store`]s. Whatever PD sends, the result is a valid domain value or a typed [`Error`]: an
//! empty or inverted key range, a zero id, a missing epoch, a region without peers, a leader that
//! is not a peer, an unknown enum value, or a scan answer whose regions overlap or stray outside
//! the range asked for. Private: the crate's API speaks domain types only.

use hashbrown::HashSet;
use kvfeed_proto::{metapb, pdpb};
use kvfeed_span::{EncodedKey, Span};
use std::sync::Arc;

use crate::error::{Error, PdErrorKind, RegionListError};
use crate::meta::{InvalidRegion, Peer, PeerRole, Region, RegionEpoch, Store, StoreState};

/// A region with its leader (if any), as PD sends them in scans and look-ups.
pub(crate) type RegionWithLeader = (metapb::Region, Option<metapb::Peer>);

/// Converts a `metapb.Peer`. A peer with id 0 or store id 0 is refused.
pub(crate) fn peer(pb: &metapb::Peer) -> Result<Peer, InvalidRegion> {
    if pb.id == 0 || pb.store_id == 0 {
        return Err(InvalidRegion::ZeroPeerId { peer_id: pb.id, store_id: pb.store_id });
    }
    let role = match metapb::PeerRole::try_from(pb.role) {
        Ok(metapb::PeerRole::Voter) => PeerRole::Voter,
        Ok(metapb::PeerRole::Learner) => PeerRole::Learner,
        Ok(metapb::PeerRole::IncomingVoter) => PeerRole::IncomingVoter,
        Ok(metapb::PeerRole::DemotingVoter) => PeerRole::DemotingVoter,
        Err(_) => return Err(InvalidRegion::UnknownRole { peer_id: pb.id, role: pb.role }),
    };
    Ok(Peer { id: pb.id, store_id: pb.store_id, role, is_witness: pb.is_witness })
}

/// The leader PD or TiKV named, if any: an absent peer and an empty one (id 0) both mean "no
/// leader known".
pub(crate) fn leader(pb: Option<&metapb::Peer>) -> Option<&metapb::Peer> {
    pb.filter(|p| p.id != 0)
}

/// Converts a `metapb.Region` and its leader (see [`leader`] for what counts as none).
pub(crate) fn region(
    pb: &metapb::Region,
    leader_pb: Option<&metapb::Peer>,
) -> Result<Region, Error> {
    let invalid = |reason| Error::InvalidRegion { region_id: pb.id, reason };
    let epoch = pb.region_epoch.ok_or(invalid(InvalidRegion::MissingEpoch))?;
    let span = Span::from_bytes(&pb.start_key, &pb.end_key).map_err(|_| {
        invalid(InvalidRegion::EmptyRange {
            start: EncodedKey::from_encoded(&pb.start_key),
            end: EncodedKey::from_encoded(&pb.end_key),
        })
    })?;
    let peers = pb.peers.iter().map(peer).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
    let leader_id = leader(leader_pb).map(|p| p.id);
    Region::new(pb.id, span, RegionEpoch::new(epoch.version, epoch.conf_ver), peers, leader_id)
        .map_err(invalid)
}

/// The regions of a `ScanRegionsResponse` with their leaders: the `regions` list when PD sent
/// one, the legacy parallel `region_metas`/`leaders` arrays otherwise (a missing or empty leader
/// means none).
pub(crate) fn scan_response(resp: pdpb::ScanRegionsResponse) -> Vec<RegionWithLeader> {
    if !resp.regions.is_empty() {
        return pd_regions(resp.regions);
    }
    let mut leaders = resp.leaders.into_iter();
    resp.region_metas.into_iter().map(|r| (r, leaders.next())).collect()
}

/// The regions of a list of `pdpb.Region` (BatchScanRegions, ScanRegions) with their leaders.
/// Entries without a region are dropped.
pub(crate) fn pd_regions(regions: Vec<pdpb::Region>) -> Vec<RegionWithLeader> {
    regions.into_iter().filter_map(|r| Some((r.region?, r.leader))).collect()
}

/// Converts and checks the answer to a scan of `span` with at most `limit` regions: every region
/// valid, no two overlapping, in key order, each overlapping `span`, no id twice.
pub(crate) fn region_list(
    items: &[RegionWithLeader],
    span: &Span,
    limit: usize,
) -> Result<Vec<Region>, Error> {
    if items.len() > limit {
        return Err(Error::InvalidRegionList(RegionListError::TooMany { got: items.len(), limit }));
    }
    let mut out: Vec<Region> = Vec::with_capacity(items.len());
    let mut ids = HashSet::with_capacity(items.len());
    for (pb, leader_pb) in items {
        let region = region(pb, leader_pb.as_ref())?;
        let list_error = |e| Err(Error::InvalidRegionList(e));
        if !region.span().overlaps(span) {
            return list_error(RegionListError::OutOfRange { region_id: region.id() });
        }
        if let Some(prev) = out.last()
            && (prev.end().is_empty() || prev.end() > region.start())
        {
            return list_error(RegionListError::Overlap { left: prev.id(), right: region.id() });
        }
        if !ids.insert(region.id()) {
            return list_error(RegionListError::DuplicateId { region_id: region.id() });
        }
        out.push(region);
    }
    Ok(out)
}

/// Converts a `metapb.Store`. A zero id or an unknown state is refused.
pub(crate) fn store(pb: metapb::Store) -> Result<Store, Error> {
    let invalid = |reason| Error::InvalidStore { store_id: pb.id, reason };
    if pb.id == 0 {
        return Err(invalid("zero id"));
    }
    let state = match metapb::StoreState::try_from(pb.state) {
        Ok(metapb::StoreState::Up) => StoreState::Up,
        Ok(metapb::StoreState::Offline) => StoreState::Offline,
        Ok(metapb::StoreState::Tombstone) => StoreState::Tombstone,
        Err(_) => return Err(invalid("unknown state")),
    };
    Ok(Store {
        id: pb.id,
        address: Arc::from(pb.address.as_str()),
        state,
        version: Arc::from(pb.version.as_str()),
        labels: pb.labels.into_iter().map(|l| (l.key, l.value)).collect(),
    })
}

/// The kind of a PD header error type.
pub(crate) fn pd_error_kind(value: i32) -> PdErrorKind {
    use pdpb::ErrorType as T;
    match T::try_from(value) {
        Ok(T::Unknown) => PdErrorKind::Unknown,
        Ok(T::NotBootstrapped) => PdErrorKind::NotBootstrapped,
        Ok(T::StoreTombstone) => PdErrorKind::StoreTombstone,
        Ok(T::AlreadyBootstrapped) => PdErrorKind::AlreadyBootstrapped,
        Ok(T::IncompatibleVersion) => PdErrorKind::IncompatibleVersion,
        Ok(T::RegionNotFound) => PdErrorKind::RegionNotFound,
        Ok(T::GlobalConfigNotFound) => PdErrorKind::GlobalConfigNotFound,
        Ok(T::DuplicatedEntry) => PdErrorKind::DuplicatedEntry,
        Ok(T::EntryNotFound) => PdErrorKind::EntryNotFound,
        Ok(T::InvalidValue) => PdErrorKind::InvalidValue,
        Ok(T::DataCompacted) => PdErrorKind::DataCompacted,
        Ok(T::RegionsNotContainAllKeyRange) => PdErrorKind::RegionsNotContainAllKeyRange,
        Ok(T::Ok) | Err(_) => PdErrorKind::Other(value),
    }
}

/// A PD member URL without its scheme: `http://host:port` and `https://host:port` become
/// `host:port`; a URL without a scheme is returned as is (trailing slashes dropped).
pub(crate) fn strip_scheme(url: &str) -> &str {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.trim_end_matches('/')
}
