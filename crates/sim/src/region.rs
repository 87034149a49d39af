//! The region table: regions by id and by ENCODED start key, their epochs, peers and leaders.
//!
//! Boundaries are memcomparable-encoded keys (empty start: -inf, empty end: +inf), exactly as PD
//! stores them; raw keys are located by comparing through the encoding. Splits and merges
//! follow TiKV: a split keeps the original id on the right half (`right-derive-when-split`) and
//! gives the left half a new id, both with `version + 1`; a merge extends the target over the
//! source, with `version = max(source, target) + 1`, and removes the source.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use kvfeed_proto::metapb;
use kvfeed_span::key::cmp_raw_with_encoded;

/// A peer of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMeta {
    /// The peer id.
    pub id: u64,
    /// The store holding it.
    pub store_id: u64,
}

/// One region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionMeta {
    /// The region id.
    pub id: u64,
    /// Encoded start key, inclusive (empty: -inf).
    pub start: Bytes,
    /// Encoded end key, exclusive (empty: +inf).
    pub end: Bytes,
    /// Epoch: configuration version.
    pub conf_ver: u64,
    /// Epoch: split/merge version.
    pub version: u64,
    /// The peers, one per store.
    pub peers: Vec<PeerMeta>,
    /// The store of the leading peer.
    pub leader_store: u64,
}

impl RegionMeta {
    /// The region as `metapb.Region`.
    #[must_use]
    pub fn to_proto(&self) -> metapb::Region {
        metapb::Region {
            id: self.id,
            start_key: self.start.clone(),
            end_key: self.end.clone(),
            region_epoch: Some(self.epoch()),
            peers: self.peers.iter().map(|p| peer_proto(*p)).collect(),
            ..metapb::Region::default()
        }
    }

    /// The epoch as `metapb.RegionEpoch`.
    #[must_use]
    pub fn epoch(&self) -> metapb::RegionEpoch {
        metapb::RegionEpoch { conf_ver: self.conf_ver, version: self.version }
    }

    /// The peer on `store_id`, if any.
    #[must_use]
    pub fn peer_on(&self, store_id: u64) -> Option<PeerMeta> {
        self.peers.iter().copied().find(|p| p.store_id == store_id)
    }

    /// The leading peer as `metapb.Peer`.
    #[must_use]
    pub fn leader_proto(&self) -> Option<metapb::Peer> {
        self.peer_on(self.leader_store).map(peer_proto)
    }

    /// Whether the encoded `key` is in the region.
    #[must_use]
    pub fn contains_encoded(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && (self.end.is_empty() || key < &self.end[..])
    }

    /// Whether the raw `key` is in the region.
    #[must_use]
    pub fn contains_raw(&self, key: &[u8]) -> bool {
        raw_in_range(key, &self.start, &self.end)
    }
}

/// Whether raw `key` lies in the encoded range `[start, end)` (empty end: +inf).
#[must_use]
pub(crate) fn raw_in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    cmp_raw_with_encoded(key, start) != Ordering::Less
        && (end.is_empty() || cmp_raw_with_encoded(key, end) == Ordering::Less)
}

fn peer_proto(p: PeerMeta) -> metapb::Peer {
    metapb::Peer { id: p.id, store_id: p.store_id, ..metapb::Peer::default() }
}

/// Why a topology change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// No region with this id.
    #[error("region {0} not found")]
    NotFound(u64),
    /// The split key is not strictly inside the region.
    #[error("split key is not inside region {0}")]
    BadSplitKey(u64),
    /// The regions are not neighbours.
    #[error("regions {0} and {1} are not adjacent")]
    NotAdjacent(u64, u64),
    /// The store holds no peer of the region.
    #[error("store {store} has no peer of region {region}")]
    NoPeer {
        /// The region.
        region: u64,
        /// The store.
        store: u64,
    },
}

/// All regions, covering the whole key space without overlap.
#[derive(Debug)]
pub(crate) struct RegionTable {
    by_start: BTreeMap<Bytes, u64>,
    by_id: HashMap<u64, RegionMeta>,
    next_id: u64,
}

impl RegionTable {
    /// One region over the whole key space with peers on `stores` (the first leads), cut at
    /// the encoded `splits` (sorted, deduplicated here). Leaders go round-robin over the stores.
    #[must_use]
    pub(crate) fn new(stores: &[u64], replicas: usize, splits: &[Bytes]) -> Self {
        let mut table = Self { by_start: BTreeMap::new(), by_id: HashMap::new(), next_id: 1000 };
        let mut cuts: Vec<Bytes> = splits.iter().filter(|s| !s.is_empty()).cloned().collect();
        cuts.sort();
        cuts.dedup();
        let mut start = Bytes::new();
        let replicas = replicas.clamp(1, stores.len().max(1));
        for (i, end) in cuts.into_iter().map(Some).chain([None]).enumerate() {
            let id = table.alloc_id();
            let peers = (0..replicas)
                .map(|r| {
                    let store_id = stores[(i + r) % stores.len()];
                    PeerMeta { id: table.alloc_id(), store_id }
                })
                .collect::<Vec<_>>();
            let end = end.unwrap_or_default();
            let region = RegionMeta {
                id,
                start: start.clone(),
                end: end.clone(),
                conf_ver: 1,
                version: 1,
                leader_store: peers[0].store_id,
                peers,
            };
            table.insert(region);
            start = end;
        }
        table
    }

    /// A fresh id (regions and peers share the space, as with PD's AllocID).
    pub(crate) fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn insert(&mut self, region: RegionMeta) {
        self.by_start.insert(region.start.clone(), region.id);
        self.by_id.insert(region.id, region);
    }

    /// The region with this id.
    #[must_use]
    pub(crate) fn get(&self, id: u64) -> Option<&RegionMeta> {
        self.by_id.get(&id)
    }

    /// Number of regions.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The region containing the encoded `key`.
    #[must_use]
    pub(crate) fn locate_encoded(&self, key: &[u8]) -> Option<&RegionMeta> {
        let (_, id) =
            self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        self.by_id.get(id).filter(|r| r.contains_encoded(key))
    }

    /// The region containing the raw `key`.
    #[must_use]
    pub(crate) fn locate_raw(&self, key: &[u8]) -> Option<&RegionMeta> {
        self.locate_encoded(&kvfeed_span::key::encode(key))
    }

    /// Regions overlapping the encoded `[start, end)` (empty end: +inf), in key order, at most
    /// `limit` (0: no limit).
    #[must_use]
    pub(crate) fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionMeta> {
        let first = self.locate_encoded(start).map_or_else(|| start.to_vec(), |r| r.start.to_vec());
        let mut out = Vec::new();
        for (s, id) in
            self.by_start.range::<[u8], _>((Bound::Included(first.as_slice()), Bound::Unbounded))
        {
            if !end.is_empty() && s[..] >= *end {
                break;
            }
            if limit != 0 && out.len() >= limit {
                break;
            }
            if let Some(r) = self.by_id.get(id) {
                out.push(r);
            }
        }
        out
    }

    /// Every region, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &RegionMeta> + '_ {
        self.by_start.values().filter_map(|id| self.by_id.get(id))
    }

    /// Splits `id` at the encoded `key`; returns `(left, right)`. The right half keeps the id.
    pub(crate) fn split(
        &mut self,
        id: u64,
        key: &[u8],
    ) -> Result<(RegionMeta, RegionMeta), RegionError> {
        let old = self.by_id.get(&id).ok_or(RegionError::NotFound(id))?.clone();
        if key <= &old.start[..] || !old.contains_encoded(key) {
            return Err(RegionError::BadSplitKey(id));
        }
        let key = Bytes::copy_from_slice(key);
        let left_id = self.alloc_id();
        let peers =
            old.peers.iter().map(|p| PeerMeta { id: self.alloc_id(), store_id: p.store_id });
        let left = RegionMeta {
            id: left_id,
            start: old.start.clone(),
            end: key.clone(),
            conf_ver: old.conf_ver,
            version: old.version + 1,
            peers: peers.collect(),
            leader_store: old.leader_store,
        };
        let right = RegionMeta { start: key, version: old.version + 1, ..old.clone() };
        self.by_start.remove(&old.start);
        self.insert(left.clone());
        self.insert(right.clone());
        Ok((left, right))
    }

    /// Merges `source` into its neighbour `target`; returns the merged target.
    pub(crate) fn merge(&mut self, source: u64, target: u64) -> Result<RegionMeta, RegionError> {
        let s = self.by_id.get(&source).ok_or(RegionError::NotFound(source))?.clone();
        let t = self.by_id.get(&target).ok_or(RegionError::NotFound(target))?.clone();
        let mut merged = t.clone();
        if s.end == t.start && !s.end.is_empty() {
            merged.start = s.start.clone();
        } else if t.end == s.start && !t.end.is_empty() {
            merged.end = s.end.clone();
        } else {
            return Err(RegionError::NotAdjacent(source, target));
        }
        merged.version = s.version.max(t.version) + 1;
        self.by_start.remove(&s.start);
        self.by_start.remove(&t.start);
        self.by_id.remove(&source);
        self.insert(merged.clone());
        Ok(merged)
    }

    /// Moves the leader of `id` to its peer on `store`; returns the region.
    pub(crate) fn transfer_leader(
        &mut self,
        id: u64,
        store: u64,
    ) -> Result<RegionMeta, RegionError> {
        let r = self.by_id.get_mut(&id).ok_or(RegionError::NotFound(id))?;
        if r.peer_on(store).is_none() {
            return Err(RegionError::NoPeer { region: id, store });
        }
        r.leader_store = store;
        Ok(r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvfeed_span::key::encode;

    #[test]
    fn split_merge_locate() {
        let mut t = RegionTable::new(&[1, 2, 3], 3, &[Bytes::from(encode(b"m"))]);
        assert_eq!(t.len(), 2);
        let r = t.locate_raw(b"a").unwrap().clone();
        assert!(r.contains_raw(b"a") && !r.contains_raw(b"m"));
        let (l, rr) = t.split(r.id, &encode(b"f")).unwrap();
        assert_eq!((l.version, rr.version, rr.id), (2, 2, r.id));
        assert_eq!(t.locate_raw(b"g").unwrap().id, r.id);
        assert_eq!(t.locate_raw(b"a").unwrap().id, l.id);
        assert_eq!(t.scan(b"", b"", 0).len(), 3);
        assert_eq!(t.scan(&encode(b"g"), &encode(b"h"), 0).len(), 1);
        let m = t.merge(l.id, r.id).unwrap();
        assert_eq!((m.version, m.start.len()), (3, 0));
        assert_eq!(t.len(), 2);
        assert!(t.merge(m.id, m.id).is_err());
    }
}
