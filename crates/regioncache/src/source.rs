//! The seam between the feed and PD: [`PdRegionSource`], a [`PdClient`] and the [`RegionCache`]
//! it fills.
//!
//! The feed asks it three things: which regions cover a range
//! ([`PdRegionSource::load_regions`], always from PD, in batches, with the holes reported), where to
//! send a request for one region version ([`PdRegionSource::rpc_context`], from the cache, loading
//! stores from PD as needed), and it reports what TiKV answered (`NotLeader`, a failed send,
//! `EpochNotMatch`/`RegionNotFound`) so the next answer differs.
//!
//! [`PdRegionSource`] de-duplicates identical loads in flight: concurrent callers loading the same
//! range (or the same region id, or the same store) share one PD call and its result.

use core::future::Future;
use core::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};

use hashbrown::HashMap;
use kvfeed_base::{lock, read, write};
use kvfeed_span::{EncodedKey, Span, cmp_end};
use tokio::sync::OnceCell;

use crate::cache::{Insert, RegionCache, SendFail};
use crate::error::Error;
use crate::meta::{Peer, Region, RegionId, RegionVerId, Store, StoreId};
use crate::pd::PdClient;

/// The number of regions [`PdRegionSource::load_regions`] asks PD for per call when given 0.
pub const DEFAULT_SCAN_LIMIT: usize = 1024;

/// The answer to [`PdRegionSource::load_regions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionBatch {
    /// The regions overlapping the span, in key order, unclipped (a region may extend past the
    /// span on either side).
    pub regions: Vec<Region>,
    /// The parts of the scanned part of the span that no region covers: PD knows no region
    /// there yet (a split being reported), or PD reported a region there that is stale against
    /// the cache (see [`PdRegionSource::load_regions`]) and the cache does not cover it. Load them
    /// again later.
    pub holes: Vec<Span>,
    /// Where the next call should start: the limit cut the scan short before the span's end.
    /// `None` when the whole span was scanned.
    pub resume: Option<EncodedKey>,
}

/// Where to send a request for one region version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcContext {
    /// The region version the request names.
    pub region: RegionVerId,
    /// The peer to send to: the leader if known, else the next peer that can lead.
    pub peer: Peer,
    /// The gRPC address of the peer's store, `host:port`.
    pub address: Arc<str>,
    /// The TiKV version of the store.
    pub store_version: Arc<str>,
}

/// The feed's view of PD and the region cache: a [`PdClient`] and a [`RegionCache`] it fills.
pub struct PdRegionSource {
    pd: PdClient,
    cache: RwLock<RegionCache>,
    scans: Inflight<(EncodedKey, EncodedKey, usize), Result<RegionBatch, Error>>,
    regions: Inflight<RegionId, Result<Option<Region>, Error>>,
    stores: Inflight<StoreId, Result<Store, Error>>,
}

impl core::fmt::Debug for PdRegionSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let cache = read(&self.cache);
        f.debug_struct("PdRegionSource")
            .field("pd", &self.pd)
            .field("regions", &cache.len())
            .field("stores", &cache.store_count())
            .finish()
    }
}

impl PdRegionSource {
    /// A source with an empty cache.
    pub fn new(pd: PdClient) -> Self {
        Self {
            pd,
            cache: RwLock::new(RegionCache::new()),
            scans: Inflight::default(),
            regions: Inflight::default(),
            stores: Inflight::default(),
        }
    }

    /// The PD client.
    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    /// Runs `f` on the cache (for inspection: metrics, tests). Do not block in `f`.
    pub fn with_cache<R>(&self, f: impl FnOnce(&RegionCache) -> R) -> R {
        f(&read(&self.cache))
    }

    /// The region with this id: from the cache, or else from PD (and then cached).
    pub async fn region_by_id(&self, id: RegionId) -> Result<Option<Region>, Error> {
        if let Some(region) = read(&self.cache).get(id) {
            return Ok(Some(region.clone()));
        }
        self.regions
            .run(id, || async {
                let region = self.pd.get_region_by_id(id).await?;
                if let Some(region) = &region {
                    write(&self.cache).insert(region.clone());
                }
                Ok(region)
            })
            .await
    }

    /// The region containing the encoded `key`: from the cache, or else from PD (and then
    /// cached). If the cache refuses PD's region as stale, the cached region at `key` (if any)
    /// is the answer.
    pub async fn region_at(&self, key: &[u8]) -> Result<Option<Region>, Error> {
        if let Some(region) = read(&self.cache).region_at(key) {
            return Ok(Some(region.clone()));
        }
        let region = self.pd.get_region(key).await?;
        if let Some(found) = &region {
            let mut cache = write(&self.cache);
            if cache.insert(found.clone()) == Insert::Stale {
                // PD lags behind the cache: answer with what the cache holds there (if anything).
                return Ok(cache.region_at(key).cloned());
            }
        }
        Ok(region)
    }

    /// The store with this id: from the cache unless stale, or else from PD (and then cached).
    /// A tombstone or unknown store is removed from the cache and reported as an error.
    pub async fn store(&self, id: StoreId) -> Result<Store, Error> {
        if let Some(store) = read(&self.cache).store(id) {
            return Ok(store.clone());
        }
        self.stores
            .run(id, || async {
                match self.pd.get_store(id).await {
                    Ok(store) => {
                        let displaced = write(&self.cache).insert_store(store.clone());
                        if !displaced.is_empty() {
                            tracing::info!(
                                store = id,
                                address = %store.address,
                                ?displaced,
                                "store address now belongs to another store id"
                            );
                        }
                        Ok(store)
                    }
                    Err(error) => {
                        if matches!(
                            error,
                            Error::StoreNotFound { .. } | Error::StoreTombstone { .. }
                        ) {
                            write(&self.cache).remove_store(id);
                        }
                        Err(error)
                    }
                }
            })
            .await
    }

    /// Marks a cached store stale, so that its next lookup asks PD again (to see a store whose
    /// version was refused after its upgrade).
    pub fn mark_store_stale(&self, id: StoreId) {
        write(&self.cache).mark_store_stale(id);
    }

    /// The regions overlapping `span`, loaded from PD (at most `limit` of them; 0 means
    /// [`DEFAULT_SCAN_LIMIT`]), with the holes in the scanned part and where to resume.
    ///
    /// Every region returned is one [`PdRegionSource::rpc_context`] knows at the time: when PD
    /// reports a region older than the cached one(s) over its range (a PD leader lagging after
    /// a failover), the answer carries the cached newer region(s) instead, and any part of the
    /// stale region's range the cache does not cover is reported as a hole, to load again
    /// later.
    pub async fn load_regions(&self, span: &Span, limit: usize) -> Result<RegionBatch, Error> {
        let limit = if limit == 0 { DEFAULT_SCAN_LIMIT } else { limit }.min(i32::MAX as usize);
        let key = (span.start().clone(), span.end().clone(), limit);
        self.scans
            .run(key, || async {
                let regions = self.pd.scan_regions(span, limit).await?;
                // Whether the limit cut the scan short: decided on PD's list, before any region
                // is replaced by cached ones below.
                let cut = regions.len() >= limit;
                let regions = {
                    let mut cache = write(&self.cache);
                    let mut refused = false;
                    for region in &regions {
                        if cache.insert(region.clone()) == Insert::Stale {
                            tracing::debug!(?region, "PD reported a stale region");
                            refused = true;
                        }
                    }
                    if refused { cached_cover(&cache, span, &regions) } else { regions }
                };
                Ok(batch_cut(span, regions, cut))
            })
            .await
    }

    /// Where to send a request for this region version, or `None` when that version is no
    /// longer cached (it was invalidated, or replaced by a newer one) or has no usable peer: the
    /// caller should re-divide its range with [`PdRegionSource::load_regions`].
    pub async fn rpc_context(&self, region: RegionVerId) -> Result<Option<RpcContext>, Error> {
        // Each round either answers or skips a peer, and skipping every peer removes the region,
        // so this ends within (peers + 1) rounds; the bound is a backstop.
        for _ in 0..64 {
            let Some(peer) = read(&self.cache).target(region) else { return Ok(None) };
            let store = match self.store(peer.store_id).await {
                Ok(store) if store.is_usable() => Some(store),
                Ok(_)
                | Err(
                    Error::StoreNotFound { .. }
                    | Error::StoreTombstone { .. }
                    | Error::InvalidStore { .. },
                ) => None,
                Err(error) => return Err(error),
            };
            match store {
                Some(store) => {
                    return Ok(Some(RpcContext {
                        region,
                        peer,
                        address: store.address,
                        store_version: store.version,
                    }));
                }
                None => {
                    let skipped = write(&self.cache).skip_peer(region, peer.id);
                    tracing::debug!(?region, peer = peer.id, ?skipped, "store unusable");
                }
            }
        }
        Ok(None)
    }

    /// TiKV answered `NotLeader` for this region version, naming `leader` if it knows it.
    pub fn on_not_leader(&self, region: RegionVerId, leader: Option<Peer>) {
        let outcome = write(&self.cache).update_leader(region, leader);
        tracing::debug!(?region, ?leader, ?outcome, "not leader");
    }

    /// Sending to `ctx` failed (the store is unreachable or the stream broke).
    pub fn on_send_fail(&self, ctx: &RpcContext) {
        let outcome: SendFail = write(&self.cache).on_send_fail(ctx.region, ctx.peer.id);
        tracing::debug!(region = ?ctx.region, peer = ctx.peer.id, ?outcome, "send failed");
    }

    /// Forgets the cached regions overlapping `span` that `keep` does not want (say, those no
    /// live subscription covers): a cache of a client whose subscriptions come and go holds only
    /// the regions it still works with. Returns how many were forgotten.
    pub fn forget_regions_in(&self, span: &Span, keep: impl Fn(&Span) -> bool) -> usize {
        let mut cache = write(&self.cache);
        let gone: Vec<RegionId> = cache
            .regions_in(span)
            .into_iter()
            .filter(|region| !keep(region.span()))
            .map(Region::id)
            .collect();
        for id in &gone {
            cache.remove(*id);
        }
        gone.len()
    }

    /// TiKV answered `EpochNotMatch` or `RegionNotFound` for this region version.
    pub fn invalidate(&self, region: RegionVerId) {
        write(&self.cache).invalidate(region);
    }

    /// A fresh timestamp from PD's TSO ([`PdClient::get_ts`]).
    pub async fn get_ts(&self) -> Result<u64, Error> {
        self.pd.get_ts().await
    }
}

/// What to answer for a scan whose list `scanned` the cache refused in part (a region PD
/// reported is stale against a cached one, e.g. a lagging PD leader after a failover): every
/// cached region overlapping one of the scanned regions and `span`, in key order. So a refused
/// region is replaced by the newer cached region(s) over its range, and what of its range the
/// cache does not cover becomes a hole ([`batch_cut`] finds it) to load again later. Everything
/// comes from the cache at one moment, so the list is sorted and disjoint, and each of its
/// regions answers [`PdRegionSource::rpc_context`].
fn cached_cover(cache: &RegionCache, span: &Span, scanned: &[Region]) -> Vec<Region> {
    let mut regions: Vec<Region> = Vec::new();
    for region in scanned {
        for cached in cache.regions_in(region.span()) {
            if cached.span().overlaps(span) && regions.last().is_none_or(|r| r.id() != cached.id())
            {
                regions.push(cached.clone());
            }
        }
    }
    regions
}

/// The batch answering a scan of `span` that returned `regions` (checked: sorted, disjoint, each
/// overlapping `span`) for a limit of `limit`.
#[cfg(any(test, fuzzing))]
pub(crate) fn batch(span: &Span, regions: Vec<Region>, limit: usize) -> RegionBatch {
    let cut = regions.len() >= limit;
    batch_cut(span, regions, cut)
}

/// The batch answering a scan of `span` answered by `regions` (sorted, disjoint, each
/// overlapping `span`); `cut` tells whether the limit cut PD's answer short.
pub(crate) fn batch_cut(span: &Span, regions: Vec<Region>, cut: bool) -> RegionBatch {
    let mut holes = Vec::new();
    // The first key not covered yet; `None` once plus infinity is reached.
    let mut next: Option<EncodedKey> = Some(span.start().clone());
    for region in &regions {
        let Some(want) = &next else { break };
        if region.start() > want {
            // A region overlapping the span starts below its end, so the hole is non-empty and
            // inside the span.
            holes.extend(Span::new(want.clone(), region.start().clone()).ok());
        }
        next = if region.end().is_empty() {
            None
        } else if region.end() > want {
            Some(region.end().clone())
        } else {
            next
        };
    }
    let resume = match next {
        Some(next) if cmp_end(next.as_bytes(), span.end().as_bytes()).is_lt() => {
            if cut {
                Some(next)
            } else {
                holes.extend(Span::new(next, span.end().clone()).ok());
                None
            }
        }
        _ => None,
    };
    RegionBatch { regions, holes, resume }
}

/// Calls in flight, by key: concurrent [`Inflight::run`]s with equal keys share one call.
struct Inflight<K, V> {
    calls: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for Inflight<K, V> {
    fn default() -> Self {
        Self { calls: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Inflight<K, V> {
    /// The result of `call`, or of the equal call already in flight. If the caller running the
    /// call is cancelled, a waiting caller runs it instead.
    async fn run<F, Fut>(&self, key: K, call: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = Arc::clone(lock(&self.calls).entry(key.clone()).or_default());
        let _done = Done { inflight: self, key, cell: &cell };
        cell.get_or_init(call).await.clone()
    }
}

/// Removes a finished (or abandoned) call from its [`Inflight`] map when dropped.
struct Done<'a, K: Hash + Eq, V> {
    inflight: &'a Inflight<K, V>,
    key: K,
    cell: &'a Arc<OnceCell<V>>,
}

impl<K: Hash + Eq, V> Drop for Done<'_, K, V> {
    fn drop(&mut self) {
        let mut calls = lock(&self.inflight.calls);
        // New sharers clone the cell only under this lock, so a count of two (the map and us)
        // means nobody else waits on it.
        let finished = self.cell.initialized() || Arc::strong_count(self.cell) == 2;
        if finished && calls.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, self.cell)) {
            calls.remove(&self.key);
        }
    }
}
