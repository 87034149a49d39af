//! [`ScriptedPd`]: the simulator's PD without a cluster behind it, serving what a test scripts.
//!
//! [`ScriptedPd::start`] serves the same `pdpb.PD` service as a [`Cluster`](crate::Cluster)'s PD
//! from one or more members on `127.0.0.1` ephemeral ports, but its regions, stores and TSO are
//! [`ScriptedData`] a test sets between calls ([`ScriptedPd::with_data`]), so a test decides every
//! answer: leader changes, stalls, headers left out, garbage scans, legacy scan layouts,
//! `BatchScanRegions` answering `UNIMPLEMENTED` (the default, as PD 8.1), TLS ([`PdKnobs`] through
//! [`ScriptedPd::with`]). Per-member call counts tell a test which member was asked what.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kvfeed_base::lock;
use kvfeed_proto::{metapb, pdpb};
use kvfeed_span::EncodedKey;
use tokio::net::TcpListener;

use crate::pd::{Backend, PdCalls, PdKnobs, PdMembers, ScriptedData, Tls};

/// A PD of a few members on 127.0.0.1 serving scripted regions, stores and TSO. Dropping it
/// shuts the members down.
pub struct ScriptedPd {
    members: PdMembers,
    data: Arc<Mutex<ScriptedData>>,
    addrs: Vec<String>,
}

impl std::fmt::Debug for ScriptedPd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedPd").field("members", &self.addrs).finish_non_exhaustive()
    }
}

impl ScriptedPd {
    /// Starts `members` members of cluster `cluster_id`, member 0 leading, with no region and
    /// no store.
    pub async fn start(members: usize, cluster_id: u64) -> std::io::Result<Self> {
        Self::start_inner(members, cluster_id, None).await
    }

    /// Like [`ScriptedPd::start`], serving TLS.
    #[cfg(feature = "tls")]
    pub async fn start_tls(
        members: usize,
        cluster_id: u64,
        tls: crate::pd::ServerTls,
    ) -> std::io::Result<Self> {
        Self::start_inner(members, cluster_id, Some(crate::pd::server_tls(&tls))).await
    }

    async fn start_inner(members: usize, cluster_id: u64, tls: Tls) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(members);
        let mut addrs = Vec::with_capacity(members);
        for _ in 0..members {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?.to_string());
            listeners.push(listener);
        }
        let knobs = Arc::new(Mutex::new(PdKnobs::new(cluster_id, addrs.clone())));
        let data = Arc::new(Mutex::new(ScriptedData::default()));
        let members =
            PdMembers::serve(listeners, &tls, knobs, &Backend::Scripted(Arc::clone(&data)))?;
        Ok(Self { members, data, addrs })
    }

    /// The member addresses, `host:port`.
    #[must_use]
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The member URLs, `http(s)://host:port`.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.members.urls()
    }

    /// Runs `f` on the knobs every member shares.
    pub fn with<R>(&self, f: impl FnOnce(&mut PdKnobs) -> R) -> R {
        f(&mut lock(self.members.knobs()))
    }

    /// Runs `f` on the scripted regions, stores and TSO.
    pub fn with_data<R>(&self, f: impl FnOnce(&mut ScriptedData) -> R) -> R {
        f(&mut lock(&self.data))
    }

    /// Makes `member` the leader (`None`: no leader).
    pub fn set_leader(&self, member: Option<usize>) {
        self.with(|k| k.leader = member);
    }

    /// The calls `member` served so far.
    #[must_use]
    pub fn calls(&self, member: usize) -> PdCalls {
        self.with(|k| k.calls[member])
    }

    /// Calls served by all members together.
    #[must_use]
    pub fn total_calls(&self) -> PdCalls {
        self.with(|k| k.total_calls())
    }

    /// Replaces every region with `regions` (keyed by their start keys).
    pub fn set_regions(&self, regions: impl IntoIterator<Item = pdpb::Region>) {
        let regions = regions
            .into_iter()
            .map(|r| (r.region.as_ref().map(|m| m.start_key.clone()).unwrap_or_default(), r))
            .collect();
        self.with_data(|d| d.regions = regions);
    }

    /// Adds or replaces a store.
    pub fn put_store(&self, store: metapb::Store) {
        self.with_data(|d| d.stores.insert(store.id, store));
    }

    /// Stops serving on `member` (its listener closes; open connections end).
    pub fn stop(&mut self, member: usize) {
        self.members.stop(member);
    }
}

/// A region for a scripted PD: `[start, end)` (encoded bytes, empty for unbounded), epoch
/// `{version, conf_ver: 1}`, one voter per store in `stores` (peer id `id * 1000 + store`),
/// the first one leading.
#[must_use]
pub fn region(id: u64, start: &[u8], end: &[u8], version: u64, stores: &[u64]) -> pdpb::Region {
    let peers: Vec<metapb::Peer> = stores
        .iter()
        .map(|&store_id| metapb::Peer {
            id: id * 1000 + store_id,
            store_id,
            ..metapb::Peer::default()
        })
        .collect();
    pdpb::Region {
        leader: peers.first().copied(),
        region: Some(metapb::Region {
            id,
            start_key: Bytes::copy_from_slice(start),
            end_key: Bytes::copy_from_slice(end),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version }),
            peers,
            ..metapb::Region::default()
        }),
        ..pdpb::Region::default()
    }
}

/// Regions covering the whole key space, split at `splits` (sorted encoded keys), ids from 1,
/// version 1, peers on `stores`.
#[must_use]
pub fn split_regions(splits: &[EncodedKey], stores: &[u64]) -> Vec<pdpb::Region> {
    let mut bounds: Vec<&[u8]> = Vec::with_capacity(splits.len() + 2);
    bounds.push(b"");
    bounds.extend(splits.iter().map(EncodedKey::as_bytes));
    bounds.push(b"");
    bounds.windows(2).zip(1..).map(|(pair, id)| region(id, pair[0], pair[1], 1, stores)).collect()
}

/// An `Up` TiKV store at `address`.
#[must_use]
pub fn store(id: u64, address: &str) -> metapb::Store {
    metapb::Store {
        id,
        address: address.to_owned(),
        version: "8.1.0".to_owned(),
        ..metapb::Store::default()
    }
}
