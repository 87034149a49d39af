//! Faults, injected on demand (methods on [`Cluster`]) or from a seeded [`FaultSchedule`].
//!
//! Each fault changes the state the way TiKV and PD would after it, and sends the CDC errors
//! TiKV sends: a split drops the region's registrations with `EpochNotMatch{[left, right]}`, a
//! merge with `EpochNotMatch{[]}` on both regions, a leader transfer with `NotLeader{new
//! leader}`. Stopping a store fails its streams, moves its leaders to another peer (as an
//! election would) and closes its port; restarting serves the same address again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use kvfeed_proto::cdcpb::{self, Congested};
use kvfeed_proto::errorpb;
use tonic::Status;

use crate::cluster::Cluster;
use crate::mvcc::{Mutation, TxnError};
use crate::region::{RegionError, RegionMeta};
use crate::state::lock;
use crate::workload::SplitMix64;

/// A fault that can be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Split a region at a raw key.
    Split {
        /// The region.
        region: u64,
        /// The raw split key.
        key: Vec<u8>,
    },
    /// Merge `source` into its neighbour `target`.
    Merge {
        /// The region that disappears.
        source: u64,
        /// The region that grows.
        target: u64,
    },
    /// Move a region's leader to another store.
    TransferLeader {
        /// The region.
        region: u64,
        /// The new leader's store.
        store: u64,
    },
    /// Fail every CDC stream of a store.
    ResetStreams {
        /// The store.
        store: u64,
    },
    /// Answer the next registers on a store with ServerIsBusy.
    Busy {
        /// The store.
        store: u64,
        /// How many registers.
        count: u32,
    },
    /// Drop a region's registrations with Congested.
    Congest {
        /// The region.
        region: u64,
    },
    /// Stop a store (its streams fail, its leaders move) and start it again on its address.
    RestartStore {
        /// The store.
        store: u64,
    },
    /// For `ms`, drop a region's registrations with `RegionNotFound` right after each scan
    /// ([`Cluster::storm_after_scan`]); the region is congested to start it.
    ScanStorm {
        /// The region.
        region: u64,
        /// How long, in milliseconds.
        ms: u64,
    },
    /// Wedge a store for `ms`: registers accepted and never scanned (registrations made
    /// meanwhile stay unscanned after it).
    Wedge {
        /// The store.
        store: u64,
        /// How long, in milliseconds.
        ms: u64,
    },
    /// PD refuses every call for `ms`.
    PdOutage {
        /// How long, in milliseconds.
        ms: u64,
    },
    /// PD reports a store at an unsupported version (6.5.0) for `ms`, then the simulator's
    /// release (8.5.0) again.
    RefuseVersion {
        /// The store.
        store: u64,
        /// How long, in milliseconds.
        ms: u64,
    },
    /// Prewrite a key and never commit it (an abandoned transaction, TTL `ttl_ms`).
    AbandonLock {
        /// The raw key.
        key: Vec<u8>,
        /// Lock TTL.
        ttl_ms: u64,
    },
    /// Prewrite an async-commit transaction over `keys` (the first is the primary) and never
    /// commit it: `complete` prewrites every key (the transaction is committed, a resolver must
    /// find its commit ts), otherwise the last key is never prewritten (it must be rolled back).
    AbandonAsyncCommit {
        /// The raw keys.
        keys: Vec<Vec<u8>>,
        /// Whether every key was prewritten.
        complete: bool,
        /// Lock TTL.
        ttl_ms: u64,
    },
}

/// Why a fault could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// A topology change was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A transaction failed.
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// No such store.
    #[error("store {0} not found")]
    NoStore(u64),
    /// Restarting failed.
    #[error("restart failed: {0}")]
    Io(String),
}

fn epoch_not_match(regions: Vec<RegionMeta>) -> cdcpb::Error {
    cdcpb::Error {
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: regions.iter().map(RegionMeta::to_proto).collect(),
        }),
        ..cdcpb::Error::default()
    }
}

impl Cluster {
    /// Splits `region` at the raw `key`; returns `(left, right)` (right keeps the id).
    pub fn split_region(
        &self,
        region: u64,
        key: &[u8],
    ) -> Result<(RegionMeta, RegionMeta), FaultError> {
        let mut st = lock(&self.shared.state);
        let (left, right) = st.regions.split(region, &kvfeed_span::key::encode(key))?;
        st.drop_region(region, &epoch_not_match(vec![left.clone(), right.clone()]));
        Ok((left, right))
    }

    /// Merges `source` into its neighbour `target`; returns the merged region.
    pub fn merge_regions(&self, source: u64, target: u64) -> Result<RegionMeta, FaultError> {
        let mut st = lock(&self.shared.state);
        let merged = st.regions.merge(source, target)?;
        st.drop_region(source, &epoch_not_match(Vec::new()));
        st.drop_region(target, &epoch_not_match(Vec::new()));
        Ok(merged)
    }

    /// Moves `region`'s leader to its peer on `store`.
    pub fn transfer_leader(&self, region: u64, store: u64) -> Result<RegionMeta, FaultError> {
        let mut st = lock(&self.shared.state);
        let old = st.regions.get(region).map(|r| r.leader_store);
        let r = st.regions.transfer_leader(region, store)?;
        if old != Some(store) {
            let e = cdcpb::Error {
                not_leader: Some(errorpb::NotLeader {
                    region_id: region,
                    leader: r.leader_proto(),
                }),
                ..cdcpb::Error::default()
            };
            st.drop_region(region, &e);
        }
        Ok(r)
    }

    /// Fails every CDC stream on `store` with `UNAVAILABLE` (the store stays up).
    pub fn reset_store_streams(&self, store: u64) {
        let mut st = lock(&self.shared.state);
        for c in st.conns_of(store) {
            st.remove_conn(c, Some(Status::unavailable("stream reset by the simulator")));
        }
    }

    /// Stops `store`: its streams fail, its leaders move to live peers, its port closes.
    pub async fn stop_store(&self, store: u64) -> Result<(), FaultError> {
        {
            let mut st = lock(&self.shared.state);
            let s = st.stores.get_mut(&store).ok_or(FaultError::NoStore(store))?;
            s.up = false;
            for c in st.conns_of(store) {
                st.remove_conn(c, Some(Status::unavailable("store stopped")));
            }
            let live: Vec<u64> =
                st.stores.iter().filter(|(_, s)| s.up).map(|(id, _)| *id).collect();
            let moves: Vec<(u64, u64)> = st
                .regions
                .iter()
                .filter(|r| r.leader_store == store)
                .filter_map(|r| {
                    r.peers.iter().find(|p| live.contains(&p.store_id)).map(|p| (r.id, p.store_id))
                })
                .collect();
            for (region, to) in moves {
                let _ = st.regions.transfer_leader(region, to);
            }
        }
        if let Some(task) = self.stop_server(store) {
            let mut task = Box::pin(task);
            if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                task.abort();
            }
        }
        Ok(())
    }

    /// Restarts a stopped store on the same address.
    pub async fn restart_store(&self, store: u64) -> Result<(), FaultError> {
        self.start_server(store).await.map_err(|e| FaultError::Io(e.to_string()))?;
        let mut st = lock(&self.shared.state);
        st.stores.get_mut(&store).ok_or(FaultError::NoStore(store))?.up = true;
        Ok(())
    }

    /// Answers the next `count` registers on `store` with ServerIsBusy.
    pub fn set_server_busy(&self, store: u64, count: u32) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.busy_registers = count;
        }
    }

    /// Answers the next `count` registers on `store` with Congested (TiKV >= 8.4).
    pub fn set_congested(&self, store: u64, count: u32) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.congested_registers = count;
        }
    }

    /// Drops every registration of `region` with Congested.
    pub fn congest_region(&self, region: u64) {
        let e = cdcpb::Error {
            congested: Some(Congested { region_id: region }),
            ..cdcpb::Error::default()
        };
        lock(&self.shared.state).drop_region(region, &e);
    }

    /// For `duration` from now, drops every registration of `region` with `RegionNotFound`
    /// right after its incremental scan ends (INITIALIZED sent): TiKV v8.1 reports its own
    /// memory-quota trouble this way, and a client that re-scans at once storms it.
    pub fn storm_after_scan(&self, region: u64, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        lock(&self.shared.state).scan_storms.insert(region, until);
    }

    /// Register requests `region` received so far (accepted or not).
    #[must_use]
    pub fn registers_of_region(&self, region: u64) -> u64 {
        lock(&self.shared.state).region_registers.get(&region).copied().unwrap_or(0)
    }

    /// Makes `store` accept registers and never scan them (a wedged store: no event, no error,
    /// the stream stays open), or scan new ones again with `false`.
    pub fn set_store_wedged(&self, store: u64, wedged: bool) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.wedged = wedged;
        }
    }

    /// Delays every CDC message `store` sends by `delay` (zero: normal speed).
    pub fn set_store_slow(&self, store: u64, delay: Duration) {
        if let Some(s) = lock(&self.shared.state).stores.get(&store) {
            s.slow_ms
                .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// Makes `store` answer `EventFeedV2` with UNIMPLEMENTED (TiKV before 7.3), or not.
    pub fn set_v1_only(&self, store: u64, v1_only: bool) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.v1_only = v1_only;
        }
    }

    /// Makes PD advertise `address` for `store` (the store's own server keeps running where it
    /// is): clients go to whatever serves there, e.g. a scripted misbehaving server.
    pub fn set_store_address(&self, store: u64, address: String) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.address = address;
        }
    }

    /// Makes `store` check requests against `cluster_id` (a store of another cluster behind
    /// this PD), or against the cluster's own id again with `None`.
    pub fn set_store_cluster_id(&self, store: u64, cluster_id: Option<u64>) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.cluster_id = cluster_id;
        }
    }

    /// Makes `store` refuse every register with `Compatibility { required_version }` (a store
    /// that needs a newer client), or accept them again with `None`.
    pub fn set_store_requires_version(&self, store: u64, required_version: Option<String>) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.requires_version = required_version;
        }
    }

    /// Sets the TiKV version PD reports for `store` (a store being upgraded, or an old one).
    pub fn set_store_version(&self, store: u64, version: &str) {
        if let Some(s) = lock(&self.shared.state).stores.get_mut(&store) {
            s.version = version.to_owned();
        }
    }

    /// Answers every live registration of `region` with `DuplicateRequest`, keeping the
    /// registrations alive (what TiKV does when a client registers a pair twice on a stream);
    /// returns how many registrations were told.
    pub fn send_duplicate_request(&self, region: u64) -> usize {
        let st = lock(&self.shared.state);
        let regs: Vec<(u64, u64)> =
            st.by_region.get(&region).map(|s| s.to_vec()).unwrap_or_default();
        for &(conn, request_id) in &regs {
            let e = cdcpb::Error {
                duplicate_request: Some(cdcpb::DuplicateRequest { region_id: region }),
                ..cdcpb::Error::default()
            };
            st.send_events(conn, vec![crate::state::error_event(region, request_id, e)]);
        }
        regs.len()
    }

    /// Prewrites `key` with `ttl_ms` and never commits it; returns the start ts.
    pub fn abandon_lock(&self, key: &[u8], ttl_ms: u64) -> Result<u64, FaultError> {
        let m = Mutation::put(Bytes::copy_from_slice(key), Bytes::from_static(b"abandoned"));
        Ok(self.prewrite(&[m], ttl_ms)?)
    }

    /// Prewrites an async-commit transaction over `keys` (distinct; the first is the primary)
    /// and abandons it; all keys, or all but the last when `complete` is false. Returns its
    /// start ts.
    pub fn abandon_async_commit(
        &self,
        keys: &[Vec<u8>],
        complete: bool,
        ttl_ms: u64,
    ) -> Result<u64, FaultError> {
        let mut all: Vec<Mutation> = Vec::new();
        for key in keys {
            if !all.iter().any(|m| m.key[..] == key[..]) {
                let value = Bytes::from_static(b"abandoned async commit");
                all.push(Mutation::put(Bytes::copy_from_slice(key), value));
            }
        }
        let written = if complete || all.len() < 2 { all.len() } else { all.len() - 1 };
        let indices: Vec<usize> = (0..written).collect();
        let start_ts = self.begin();
        self.prewrite_part(start_ts, &all, &indices, ttl_ms, true)?;
        Ok(start_ts)
    }

    /// Applies a scheduled fault.
    pub async fn apply_fault(&self, fault: &Fault) -> Result<(), FaultError> {
        match fault {
            Fault::Split { region, key } => self.split_region(*region, key).map(drop),
            Fault::Merge { source, target } => self.merge_regions(*source, *target).map(drop),
            Fault::TransferLeader { region, store } => {
                self.transfer_leader(*region, *store).map(drop)
            }
            Fault::ResetStreams { store } => {
                self.reset_store_streams(*store);
                Ok(())
            }
            Fault::Busy { store, count } => {
                self.set_server_busy(*store, *count);
                Ok(())
            }
            Fault::Congest { region } => {
                self.congest_region(*region);
                Ok(())
            }
            Fault::RestartStore { store } => {
                self.stop_store(*store).await?;
                self.restart_store(*store).await
            }
            Fault::AbandonLock { key, ttl_ms } => self.abandon_lock(key, *ttl_ms).map(drop),
            Fault::AbandonAsyncCommit { keys, complete, ttl_ms } => {
                self.abandon_async_commit(keys, *complete, *ttl_ms).map(drop)
            }
            Fault::ScanStorm { region, ms } => {
                self.storm_after_scan(*region, Duration::from_millis(*ms));
                self.congest_region(*region);
                Ok(())
            }
            Fault::Wedge { store, ms } => {
                self.set_store_wedged(*store, true);
                let (shared, store) = (Arc::clone(&self.shared), *store);
                self.after(*ms, move || {
                    if let Some(s) = lock(&shared.state).stores.get_mut(&store) {
                        s.wedged = false;
                    }
                });
                Ok(())
            }
            Fault::PdOutage { ms } => {
                self.with_pd(|pd| pd.refusing = true);
                let knobs = Arc::clone(self.pd_knobs());
                self.after(*ms, move || kvfeed_base::lock(&knobs).refusing = false);
                Ok(())
            }
            Fault::RefuseVersion { store, ms } => {
                let store = *store;
                {
                    let mut st = lock(&self.shared.state);
                    let s = st.stores.get_mut(&store).ok_or(FaultError::NoStore(store))?;
                    s.version = "6.5.0".to_owned();
                }
                // Back to the release every store starts at (not to what was there: two
                // refusals overlapping must not leave the store refused for good).
                let shared = Arc::clone(&self.shared);
                self.after(*ms, move || {
                    if let Some(s) = lock(&shared.state).stores.get_mut(&store) {
                        s.version = crate::pd::STORE_VERSION.to_owned();
                    }
                });
                Ok(())
            }
        }
    }

    /// Runs `end` after `ms` milliseconds, on a task of its own (the end of a lasting fault).
    fn after(&self, ms: u64, end: impl FnOnce() + Send + 'static) {
        drop(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            end();
        }));
    }
}

/// A deterministic stream of faults from a seed, chosen against the cluster's current state.
#[derive(Debug, Clone)]
pub struct FaultSchedule {
    rng: SplitMix64,
    /// Raw keys splits and abandoned locks are drawn from.
    pub keys: Vec<Vec<u8>>,
    /// Whether an abandoned async-commit transaction may be complete (lock resolution then
    /// commits its values, which no workload wrote).
    foreign_commits: bool,
}

impl FaultSchedule {
    /// A schedule drawing split points and lock keys from `keys`.
    #[must_use]
    pub fn new(seed: u64, keys: Vec<Vec<u8>>) -> Self {
        Self { rng: SplitMix64::new(seed), keys, foreign_commits: true }
    }

    /// The same schedule, except that no fault commits a value of its own: abandoned
    /// async-commit transactions always miss a secondary (lock resolution rolls them back).
    /// For keys whose values must stay what a workload wrote (TiDB rows a decoder reads).
    #[must_use]
    pub fn without_foreign_commits(mut self) -> Self {
        self.foreign_commits = false;
        self
    }

    /// The next fault for `cluster`'s current topology.
    pub fn next_fault(&mut self, cluster: &Cluster) -> Fault {
        let regions = cluster.regions();
        let stores = cluster.store_ids();
        let region = &regions[self.rng.below(regions.len() as u64) as usize];
        let store = stores[self.rng.below(stores.len() as u64) as usize];
        let key = if self.keys.is_empty() {
            vec![b'k', self.rng.below(256) as u8]
        } else {
            self.keys[self.rng.below(self.keys.len() as u64) as usize].clone()
        };
        match self.rng.below(13) {
            0 => match cluster.region_of_raw(&key) {
                Some(r) => Fault::Split { region: r.id, key },
                None => Fault::ResetStreams { store },
            },
            1 if regions.len() > 1 => {
                let i = self.rng.below(regions.len() as u64 - 1) as usize;
                Fault::Merge { source: regions[i].id, target: regions[i + 1].id }
            }
            2 => {
                let p = region.peers[self.rng.below(region.peers.len() as u64) as usize];
                Fault::TransferLeader { region: region.id, store: p.store_id }
            }
            3 => Fault::Busy { store, count: 1 + self.rng.below(3) as u32 },
            4 => Fault::Congest { region: region.id },
            5 => Fault::AbandonLock { key, ttl_ms: 100 },
            6 => Fault::RestartStore { store },
            7 => Fault::ScanStorm { region: region.id, ms: 300 + self.rng.below(1500) },
            8 => Fault::Wedge { store, ms: 300 + self.rng.below(1200) },
            9 => Fault::PdOutage { ms: 200 + self.rng.below(1000) },
            10 => Fault::RefuseVersion { store, ms: 300 + self.rng.below(1200) },
            11 => {
                let other = if self.keys.is_empty() {
                    vec![b'k', self.rng.below(256) as u8]
                } else {
                    self.keys[self.rng.below(self.keys.len() as u64) as usize].clone()
                };
                Fault::AbandonAsyncCommit {
                    keys: vec![key, other],
                    complete: self.rng.chance(50) && self.foreign_commits,
                    ttl_ms: 100,
                }
            }
            _ => Fault::ResetStreams { store },
        }
    }
}
