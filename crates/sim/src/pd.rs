//! The `pdpb.PD` server: the repository's one PD service, with two backends.
//!
//! A PD is one or more members on `127.0.0.1` ephemeral ports sharing one [`PdKnobs`] (cluster
//! id, which member leads, misbehaviour, per-member call counts). What it serves comes from its
//! backend: a [`Cluster`](crate::Cluster)'s live regions, stores and TSO, or the regions, stores
//! and TSO a test scripts ([`ScriptedPd`](crate::scripted::ScriptedPd)).
//!
//! Behaves as PD v8.1 does where a client can tell: `GetMembers` and `GetClusterInfo` answer
//! whatever the cluster id; a follower answers every other call with `UNAVAILABLE` "not leader";
//! a wrong cluster id is `FAILED_PRECONDITION` "mismatch cluster id, need X but got Y"; an
//! unknown region leaves `region` unset; an unknown store is a header error `UNKNOWN` "invalid
//! store ID". `ScanRegions` answers in the [`ScanLayout`] the knobs say; `BatchScanRegions`
//! (PD 8.5) is `UNIMPLEMENTED` unless [`PdKnobs::batch_scan`] is set.

use core::pin::Pin;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kvfeed_base::lock;
use kvfeed_proto::pdpb::pd_server::{Pd, PdServer};
use kvfeed_proto::{metapb, pdpb};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::gc::GcState;
use crate::region::RegionMeta;
use crate::state::{Shared, StoreState};

/// The TiKV version PD reports for a store unless a test sets another.
pub(crate) const STORE_VERSION: &str = "8.5.0";

/// Calls one member served, by method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PdCalls {
    /// `GetMembers`.
    pub get_members: u64,
    /// `GetRegion`.
    pub get_region: u64,
    /// `GetRegionByID`.
    pub get_region_by_id: u64,
    /// `ScanRegions`.
    pub scan_regions: u64,
    /// `BatchScanRegions` (answered or not).
    pub batch_scan_regions: u64,
    /// `GetStore`.
    pub get_store: u64,
    /// `GetAllStores`.
    pub get_all_stores: u64,
    /// `Tso` streams opened.
    pub tso_streams: u64,
    /// `TsoRequest`s received on all streams.
    pub tso_requests: u64,
    /// `GetGCSafePoint` and `UpdateServiceGCSafePoint`.
    pub gc_calls: u64,
    /// Leader-only calls refused with "not leader".
    pub not_leader: u64,
}

impl PdCalls {
    fn add(self, c: Self) -> Self {
        Self {
            get_members: self.get_members + c.get_members,
            get_region: self.get_region + c.get_region,
            get_region_by_id: self.get_region_by_id + c.get_region_by_id,
            scan_regions: self.scan_regions + c.scan_regions,
            batch_scan_regions: self.batch_scan_regions + c.batch_scan_regions,
            get_store: self.get_store + c.get_store,
            get_all_stores: self.get_all_stores + c.get_all_stores,
            tso_streams: self.tso_streams + c.tso_streams,
            tso_requests: self.tso_requests + c.tso_requests,
            gc_calls: self.gc_calls + c.gc_calls,
            not_leader: self.not_leader + c.not_leader,
        }
    }
}

/// How `ScanRegions` lays out its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanLayout {
    /// The `regions` list only (PD 7+).
    Regions,
    /// The legacy `region_metas`/`leaders` arrays only.
    Legacy,
    /// Both (what PD v8.1 sends; the simulated cluster's default).
    Both,
}

/// The state every member of a PD shares: who leads, how it misbehaves, what it was asked.
#[derive(Debug)]
pub struct PdKnobs {
    /// The cluster id requests must carry.
    pub cluster_id: u64,
    /// The cluster id put in response headers, if not `cluster_id` (impersonates another
    /// cluster).
    pub reply_cluster_id: Option<u64>,
    /// The member addresses (`host:port`), by member index.
    pub members: Vec<String>,
    /// The leading member; `None` for "no leader".
    pub leader: Option<usize>,
    /// Whether `BatchScanRegions` is served (PD 8.5) or `UNIMPLEMENTED` (PD 8.1).
    pub batch_scan: bool,
    /// The layout of `ScanRegions` answers.
    pub scan_layout: ScanLayout,
    /// Answer scans with this list instead of the regions (to send garbage).
    pub scan_override: Option<Vec<pdpb::Region>>,
    /// Never answer leader-only calls (to trigger client timeouts).
    pub stalled: bool,
    /// Answer every call, TSO and `GetMembers` included, with `UNAVAILABLE` (a PD outage).
    pub refusing: bool,
    /// Answer leader-only calls and TSO requests without a response header (a broken or
    /// impersonating server). `GetMembers` keeps its header.
    pub omit_headers: bool,
    /// Answer `GetRegion` and `GetRegionByID` with this region, whatever was asked (to send
    /// an answer that does not match the request).
    pub region_override: Option<pdpb::Region>,
    /// Calls served, by member index.
    pub calls: Vec<PdCalls>,
}

impl PdKnobs {
    /// A well-behaved PD of `members` (addresses) whose member 0 leads.
    pub(crate) fn new(cluster_id: u64, members: Vec<String>) -> Self {
        let calls = vec![PdCalls::default(); members.len()];
        Self {
            cluster_id,
            reply_cluster_id: None,
            members,
            leader: Some(0),
            batch_scan: false,
            scan_layout: ScanLayout::Regions,
            scan_override: None,
            stalled: false,
            refusing: false,
            omit_headers: false,
            region_override: None,
            calls,
        }
    }

    /// Calls served by all members together.
    #[must_use]
    pub fn total_calls(&self) -> PdCalls {
        self.calls.iter().fold(PdCalls::default(), |a, c| a.add(*c))
    }
}

/// The regions, stores and TSO of a scripted PD, which a test sets between calls.
#[derive(Debug)]
pub struct ScriptedData {
    /// The regions by start key, each with its leader.
    pub regions: BTreeMap<Bytes, pdpb::Region>,
    /// The stores by id.
    pub stores: BTreeMap<u64, metapb::Store>,
    /// The TSO's physical part (ms) and last logical value handed out.
    pub tso: (i64, i64),
    /// The GC safe points (service safe points of the clients, the GC worker's at 0).
    gc: GcState,
}

impl Default for ScriptedData {
    fn default() -> Self {
        Self {
            regions: BTreeMap::new(),
            stores: BTreeMap::new(),
            tso: (1 << 40, 0),
            gc: GcState::new(),
        }
    }
}

/// Where a PD's regions, stores and timestamps come from.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A simulated cluster's live state.
    Cluster(Arc<Shared>),
    /// What a test scripts.
    Scripted(Arc<Mutex<ScriptedData>>),
}

fn pd_region(r: &RegionMeta) -> pdpb::Region {
    pdpb::Region { region: Some(r.to_proto()), leader: r.leader_proto(), ..pdpb::Region::default() }
}

pub(crate) fn store_proto(id: u64, store: &StoreState) -> metapb::Store {
    metapb::Store {
        id,
        address: store.address.clone(),
        state: metapb::StoreState::Up as i32,
        version: store.version.clone(),
        ..metapb::Store::default()
    }
}

impl Backend {
    /// Regions overlapping `[start, end)` (empty end: +inf) in key order, at most `limit`
    /// (0: all).
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<pdpb::Region> {
        match self {
            Self::Cluster(shared) => crate::state::lock(&shared.state)
                .regions
                .scan(start, end, limit)
                .into_iter()
                .map(pd_region)
                .collect(),
            Self::Scripted(data) => {
                let d = lock(data);
                let limit = if limit == 0 { usize::MAX } else { limit };
                let first = d
                    .regions
                    .range::<[u8], _>((
                        core::ops::Bound::Unbounded,
                        core::ops::Bound::Included(start),
                    ))
                    .next_back()
                    .filter(|(_, r)| {
                        r.region
                            .as_ref()
                            .is_some_and(|m| m.end_key.is_empty() || &m.end_key[..] > start)
                    })
                    .map(|(k, _)| k.clone());
                let from = first.unwrap_or_else(|| Bytes::copy_from_slice(start));
                d.regions
                    .range::<[u8], _>((
                        core::ops::Bound::Included(&from[..]),
                        core::ops::Bound::Unbounded,
                    ))
                    .map(|(_, r)| r)
                    .take_while(|r| {
                        end.is_empty() || r.region.as_ref().is_some_and(|m| &m.start_key[..] < end)
                    })
                    .take(limit)
                    .cloned()
                    .collect()
            }
        }
    }

    fn region_at(&self, key: &[u8]) -> Option<pdpb::Region> {
        match self {
            Self::Cluster(shared) => {
                crate::state::lock(&shared.state).regions.locate_encoded(key).map(pd_region)
            }
            Self::Scripted(data) => lock(data)
                .regions
                .values()
                .find(|r| {
                    r.region.as_ref().is_some_and(|m| {
                        &m.start_key[..] <= key && (m.end_key.is_empty() || key < &m.end_key[..])
                    })
                })
                .cloned(),
        }
    }

    fn region_by_id(&self, id: u64) -> Option<pdpb::Region> {
        match self {
            Self::Cluster(shared) => {
                crate::state::lock(&shared.state).regions.get(id).map(pd_region)
            }
            Self::Scripted(data) => lock(data)
                .regions
                .values()
                .find(|r| r.region.as_ref().is_some_and(|m| m.id == id))
                .cloned(),
        }
    }

    fn store(&self, id: u64) -> Option<metapb::Store> {
        match self {
            Self::Cluster(shared) => {
                crate::state::lock(&shared.state).stores.get(&id).map(|s| store_proto(id, s))
            }
            Self::Scripted(data) => lock(data).stores.get(&id).cloned(),
        }
    }

    fn stores(&self) -> Vec<metapb::Store> {
        match self {
            Self::Cluster(shared) => crate::state::lock(&shared.state)
                .stores
                .iter()
                .map(|(id, s)| store_proto(*id, s))
                .collect(),
            Self::Scripted(data) => lock(data).stores.values().cloned().collect(),
        }
    }

    /// Runs `f` on PD's GC state with PD's clock in seconds.
    fn gc<R>(&self, f: impl FnOnce(&mut GcState, i64) -> R) -> R {
        match self {
            Self::Cluster(shared) => {
                let mut st = crate::state::lock(&shared.state);
                let now_secs = st.now_secs();
                f(&mut st.gc, now_secs)
            }
            Self::Scripted(data) => {
                let mut d = lock(data);
                let now_secs = d.tso.0 / 1000;
                f(&mut d.gc, now_secs)
            }
        }
    }

    /// Hands out `count` timestamps; returns `(physical, largest logical)`.
    fn allocate_ts(&self, count: u32) -> (i64, i64) {
        match self {
            Self::Cluster(shared) => crate::state::lock(&shared.state).tso.allocate(count),
            Self::Scripted(data) => {
                let mut d = lock(data);
                let count = i64::from(count);
                let (physical, logical) = d.tso;
                d.tso = if logical + count < 1 << crate::tso::LOGICAL_BITS {
                    (physical, logical + count)
                } else {
                    (physical + 1, count)
                };
                d.tso
            }
        }
    }
}

/// TLS material for the members (PEM).
#[cfg(feature = "tls")]
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server certificate chain.
    pub cert_pem: Vec<u8>,
    /// The server private key.
    pub key_pem: Vec<u8>,
    /// If set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// TLS settings of a PD's members (tonic's, when the `tls` feature is on).
#[cfg(feature = "tls")]
pub(crate) type Tls = Option<tonic::transport::ServerTlsConfig>;
/// TLS settings of a PD's members (none without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = Option<core::convert::Infallible>;

#[cfg(feature = "tls")]
pub(crate) fn server_tls(tls: &ServerTls) -> tonic::transport::ServerTlsConfig {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
    if let Some(ca) = &tls.client_ca_pem {
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    config
}

/// A running PD's members. Dropping it shuts them down.
pub(crate) struct PdMembers {
    knobs: Arc<Mutex<PdKnobs>>,
    scheme: &'static str,
    shutdown: Vec<Option<oneshot::Sender<()>>>,
}

impl PdMembers {
    /// Serves one member on each of `listeners` (whose addresses `knobs.members` lists), all
    /// sharing `knobs` and `backend`.
    pub(crate) fn serve(
        listeners: Vec<TcpListener>,
        tls: &Tls,
        knobs: Arc<Mutex<PdKnobs>>,
        backend: &Backend,
    ) -> std::io::Result<Self> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut shutdown = Vec::with_capacity(listeners.len());
        for (index, listener) in listeners.into_iter().enumerate() {
            let member =
                Member { index, scheme, knobs: Arc::clone(&knobs), backend: backend.clone() };
            let (stop, stopped) = oneshot::channel::<()>();
            shutdown.push(Some(stop));
            #[allow(unused_mut)]
            let mut builder = tonic::transport::Server::builder();
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                builder = builder
                    .tls_config(tls.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            let router = builder.add_service(PdServer::new(member));
            tokio::spawn(async move {
                // `serve_with_incoming` leaves socket options alone: without TCP_NODELAY, large
                // answers stall on delayed ACKs.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let stopped = async {
                    let _ = stopped.await;
                };
                if let Err(error) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                    tracing::warn!(%error, "sim PD member stopped");
                }
            });
        }
        Ok(Self { knobs, scheme, shutdown })
    }

    pub(crate) fn knobs(&self) -> &Arc<Mutex<PdKnobs>> {
        &self.knobs
    }

    /// The member URLs, `http(s)://host:port`.
    pub(crate) fn urls(&self) -> Vec<String> {
        lock(&self.knobs).members.iter().map(|a| format!("{}://{a}", self.scheme)).collect()
    }

    /// Stops serving on `member` (its listener closes; open connections end).
    pub(crate) fn stop(&mut self, member: usize) {
        if let Some(stop) = self.shutdown.get_mut(member).and_then(Option::take) {
            let _ = stop.send(());
        }
    }

    /// Stops every member.
    pub(crate) fn stop_all(&mut self) {
        for member in 0..self.shutdown.len() {
            self.stop(member);
        }
    }
}

impl Drop for PdMembers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// One member's service.
struct Member {
    index: usize,
    scheme: &'static str,
    knobs: Arc<Mutex<PdKnobs>>,
    backend: Backend,
}

impl Member {
    /// Counts the call, then refuses it unless this member leads and the cluster id matches.
    /// Returns the response header (`None` when headers are omitted), or waits forever when the
    /// PD is stalled.
    async fn admit(
        &self,
        header: Option<&pdpb::RequestHeader>,
        count: impl FnOnce(&mut PdCalls),
    ) -> Result<Option<pdpb::ResponseHeader>, Status> {
        let (header, stalled) = {
            let mut k = lock(&self.knobs);
            count(&mut k.calls[self.index]);
            let header = check(&mut k, self.index, header)?;
            (header, k.stalled)
        };
        if stalled {
            core::future::pending::<()>().await;
        }
        Ok(header)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<pdpb::Region> {
        if let Some(list) = &lock(&self.knobs).scan_override {
            return list.clone();
        }
        self.backend.scan(start, end, limit)
    }

    fn region_override(&self) -> Option<pdpb::Region> {
        lock(&self.knobs).region_override.clone()
    }
}

/// Checks leadership and the cluster id of a request; returns the response header (`None` when
/// headers are omitted).
fn check(
    k: &mut PdKnobs,
    index: usize,
    header: Option<&pdpb::RequestHeader>,
) -> Result<Option<pdpb::ResponseHeader>, Status> {
    if k.refusing {
        return Err(refused());
    }
    if k.leader != Some(index) {
        k.calls[index].not_leader += 1;
        return Err(Status::unavailable("not leader"));
    }
    let got = header.map_or(0, |h| h.cluster_id);
    if got != k.cluster_id {
        return Err(Status::failed_precondition(format!(
            "mismatch cluster id, need {} but got {got}",
            k.cluster_id
        )));
    }
    Ok((!k.omit_headers).then(|| response_header(k)))
}

/// The answer of a refusing PD.
fn refused() -> Status {
    Status::unavailable("PD is refusing every call (simulated outage)")
}

fn response_header(k: &PdKnobs) -> pdpb::ResponseHeader {
    pdpb::ResponseHeader { cluster_id: k.reply_cluster_id.unwrap_or(k.cluster_id), error: None }
}

fn limit_of(limit: i32) -> usize {
    usize::try_from(limit.max(0)).unwrap_or(0)
}

#[tonic::async_trait]
impl Pd for Member {
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let mut k = lock(&self.knobs);
        k.calls[self.index].get_members += 1;
        if k.refusing {
            return Err(refused());
        }
        let member = |i: usize, addr: &String| {
            let url = format!("{}://{addr}", self.scheme);
            pdpb::Member {
                name: format!("pd-{i}"),
                member_id: i as u64 + 1,
                peer_urls: vec![url.clone()],
                client_urls: vec![url],
                binary_version: STORE_VERSION.to_owned(),
                ..pdpb::Member::default()
            }
        };
        let members: Vec<pdpb::Member> =
            k.members.iter().enumerate().map(|(i, a)| member(i, a)).collect();
        let leader = k.leader.and_then(|i| members.get(i).cloned());
        Ok(Response::new(pdpb::GetMembersResponse {
            header: Some(response_header(&k)),
            members,
            etcd_leader: leader.clone(),
            leader,
            ..pdpb::GetMembersResponse::default()
        }))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<pdpb::GetClusterInfoRequest>,
    ) -> Result<Response<pdpb::GetClusterInfoResponse>, Status> {
        let k = lock(&self.knobs);
        Ok(Response::new(pdpb::GetClusterInfoResponse {
            header: Some(response_header(&k)),
            service_modes: vec![pdpb::ServiceMode::PdSvcMode as i32],
            tso_urls: Vec::new(),
        }))
    }

    type TsoStream = Pin<Box<dyn Stream<Item = Result<pdpb::TsoResponse, Status>> + Send>>;

    async fn tso(
        &self,
        request: Request<tonic::Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        {
            let mut k = lock(&self.knobs);
            k.calls[self.index].tso_streams += 1;
            if k.refusing {
                return Err(refused());
            }
            if k.leader != Some(self.index) {
                k.calls[self.index].not_leader += 1;
                return Err(Status::unavailable("not leader"));
            }
        }
        let knobs = Arc::clone(&self.knobs);
        let backend = self.backend.clone();
        let index = self.index;
        let responses = request.into_inner().map(move |request| {
            let request = request?;
            let header = {
                let mut k = lock(&knobs);
                k.calls[index].tso_requests += 1;
                check(&mut k, index, request.header.as_ref())?
            };
            let (physical, logical) = backend.allocate_ts(request.count);
            Ok(pdpb::TsoResponse {
                header,
                count: request.count,
                timestamp: Some(pdpb::Timestamp { physical, logical, suffix_bits: 0 }),
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_region += 1).await?;
        let found = self.region_override().or_else(|| self.backend.region_at(&request.region_key));
        Ok(Response::new(region_response(header, found)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_region_by_id += 1).await?;
        let found = self.region_override().or_else(|| self.backend.region_by_id(request.region_id));
        Ok(Response::new(region_response(header, found)))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.scan_regions += 1).await?;
        let regions = self.scan(&request.start_key, &request.end_key, limit_of(request.limit));
        let layout = lock(&self.knobs).scan_layout;
        let legacy = |regions: &[pdpb::Region]| -> (Vec<metapb::Peer>, Vec<metapb::Region>) {
            (
                regions.iter().map(|r| r.leader.unwrap_or_default()).collect(),
                regions.iter().filter_map(|r| r.region.clone()).collect(),
            )
        };
        let resp = match layout {
            ScanLayout::Regions => {
                pdpb::ScanRegionsResponse { header, regions, ..Default::default() }
            }
            ScanLayout::Legacy => {
                let (leaders, region_metas) = legacy(&regions);
                pdpb::ScanRegionsResponse { header, leaders, region_metas, regions: Vec::new() }
            }
            ScanLayout::Both => {
                let (leaders, region_metas) = legacy(&regions);
                pdpb::ScanRegionsResponse { header, leaders, region_metas, regions }
            }
        };
        Ok(Response::new(resp))
    }

    async fn batch_scan_regions(
        &self,
        request: Request<pdpb::BatchScanRegionsRequest>,
    ) -> Result<Response<pdpb::BatchScanRegionsResponse>, Status> {
        let request = request.into_inner();
        let served = {
            let mut k = lock(&self.knobs);
            k.calls[self.index].batch_scan_regions += 1;
            k.batch_scan
        };
        if !served {
            return Err(Status::unimplemented("BatchScanRegions"));
        }
        let header = self.admit(request.header.as_ref(), |_| {}).await?;
        let limit = limit_of(request.limit);
        let mut out: Vec<pdpb::Region> = Vec::new();
        let mut last_id = None;
        for range in &request.ranges {
            // Ask for no more than could still be used (one more: the first may repeat the
            // previous range's last region): a scan is O(limit), not O(regions).
            let wanted = if limit == 0 { 0 } else { (limit - out.len().min(limit)) + 1 };
            for r in self.scan(&range.start_key, &range.end_key, wanted) {
                if limit != 0 && out.len() >= limit {
                    break;
                }
                let id = r.region.as_ref().map(|m| m.id);
                if last_id == Some(id) {
                    continue;
                }
                last_id = Some(id);
                out.push(r);
            }
        }
        Ok(Response::new(pdpb::BatchScanRegionsResponse { header, regions: out }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_store += 1).await?;
        let resp = match self.backend.store(request.store_id) {
            Some(store) => pdpb::GetStoreResponse { header, store: Some(store) },
            None => {
                let k = lock(&self.knobs);
                let error = pdpb::Error {
                    r#type: pdpb::ErrorType::Unknown as i32,
                    message: format!("invalid store ID {}, not found", request.store_id),
                };
                pdpb::GetStoreResponse {
                    header: Some(pdpb::ResponseHeader {
                        error: Some(error),
                        ..response_header(&k)
                    }),
                    store: None,
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_all_stores += 1).await?;
        let stores = self
            .backend
            .stores()
            .into_iter()
            .filter(|st| {
                !(request.exclude_tombstone_stores
                    && st.state == metapb::StoreState::Tombstone as i32)
            })
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse { header, stores }))
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.gc_calls += 1).await?;
        let safe_point = self.backend.gc(|gc, _| gc.safe_point());
        Ok(Response::new(pdpb::GetGcSafePointResponse { header, safe_point }))
    }

    async fn update_service_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateServiceGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateServiceGcSafePointResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.gc_calls += 1).await?;
        let service = String::from_utf8_lossy(&request.service_id).into_owned();
        let min = self.backend.gc(|gc, now_secs| {
            gc.update_service(&service, request.ttl, request.safe_point, now_secs)
        });
        let Some(min) = min else {
            let k = lock(&self.knobs);
            let error = pdpb::Error {
                r#type: pdpb::ErrorType::Unknown as i32,
                message: format!("service ID {service} is reserved for the GC worker"),
            };
            return Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
                header: Some(pdpb::ResponseHeader { error: Some(error), ..response_header(&k) }),
                ..Default::default()
            }));
        };
        Ok(Response::new(pdpb::UpdateServiceGcSafePointResponse {
            header,
            service_id: Bytes::from(min.service_id),
            ttl: min.ttl_secs,
            min_safe_point: min.safe_point,
        }))
    }
}

fn region_response(
    header: Option<pdpb::ResponseHeader>,
    found: Option<pdpb::Region>,
) -> pdpb::GetRegionResponse {
    let (region, leader) = found.map_or((None, None), |r| (r.region, r.leader));
    pdpb::GetRegionResponse { header, region, leader, ..Default::default() }
}
