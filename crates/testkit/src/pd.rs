//! [`FakePd`]: a small in-process PD for tests and benchmarks.
//!
//! [`FakePd::start`] serves the `pdpb.PD` gRPC service from one or more members on
//! `127.0.0.1` ephemeral ports, all sharing one [`PdState`]: the cluster id, which member leads,
//! the regions, the stores and the TSO. Members behave as PD v8.1 does where a client can tell:
//! a follower answers leader-only calls with `UNAVAILABLE` "not leader", a wrong cluster id in a
//! request is `FAILED_PRECONDITION` "mismatch cluster id, need X but got Y", `GetStore` of an
//! unknown id is a header error `UNKNOWN` "invalid store ID", `GetRegion` of an unknown region
//! leaves the region unset, and `BatchScanRegions` is `UNIMPLEMENTED` unless enabled. Tests
//! change the state between calls with [`FakePd::with`] and read per-member call counts.
//!
//! It is the PD double of the client's own tests: a PD whose every answer a test decides (several
//! members, leader changes, stalls, headers left out, garbage scans, TLS), where the simulated
//! cluster's PD (`kvfeed-sim`) is one well-behaved leader serving a whole cluster's regions.

use core::pin::Pin;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kvfeed_base::lock;
use kvfeed_proto::pdpb::pd_server::{Pd, PdServer};
use kvfeed_proto::{metapb, pdpb};
use kvfeed_span::EncodedKey;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

/// Calls one member served, by method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
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
    /// Leader-only calls refused with "not leader".
    pub not_leader: u64,
}

/// The state every member of a [`FakePd`] serves.
#[derive(Debug)]
pub struct PdState {
    /// The cluster id requests must carry.
    pub cluster_id: u64,
    /// The cluster id put in response headers, if not `cluster_id` (impersonates another
    /// cluster).
    pub reply_cluster_id: Option<u64>,
    /// The member addresses (`host:port`), by member index.
    pub members: Vec<String>,
    /// The leading member; `None` for "no leader".
    pub leader: Option<usize>,
    /// The regions by start key, each with its leader.
    pub regions: BTreeMap<Bytes, pdpb::Region>,
    /// The stores by id.
    pub stores: BTreeMap<u64, metapb::Store>,
    /// Whether `BatchScanRegions` is served (PD 8.5) or `UNIMPLEMENTED` (PD 8.1).
    pub batch_scan: bool,
    /// Answer `ScanRegions` with the legacy `region_metas`/`leaders` arrays.
    pub legacy_scan: bool,
    /// Answer scans with this list instead of the regions (to send garbage).
    pub scan_override: Option<Vec<pdpb::Region>>,
    /// Never answer leader-only calls (to trigger client timeouts).
    pub stalled: bool,
    /// Answer leader-only calls and TSO requests without a response header (a broken or
    /// impersonating server). `GetMembers` keeps its header.
    pub omit_headers: bool,
    /// Answer `GetRegion` and `GetRegionByID` with this region, whatever was asked (to send
    /// an answer that does not match the request).
    pub region_override: Option<pdpb::Region>,
    /// The TSO's physical part (ms) and last logical value handed out.
    pub tso: (i64, i64),
    /// Calls served, by member index.
    pub calls: Vec<Calls>,
}

/// An in-process PD: a few members on 127.0.0.1 sharing one [`PdState`]. Dropping it shuts the
/// members down.
pub struct FakePd {
    state: Arc<Mutex<PdState>>,
    addrs: Vec<String>,
    scheme: &'static str,
    shutdown: Vec<Option<oneshot::Sender<()>>>,
}

/// TLS material for the members (PEM).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server certificate chain.
    pub cert_pem: Vec<u8>,
    /// The server private key.
    pub key_pem: Vec<u8>,
    /// If set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl FakePd {
    /// Starts `members` members of cluster `cluster_id`, member 0 leading, with no region and
    /// no store.
    pub async fn start(members: usize, cluster_id: u64) -> std::io::Result<Self> {
        Self::start_inner(members, cluster_id, None).await
    }

    /// Like [`FakePd::start`], serving TLS.
    pub async fn start_tls(
        members: usize,
        cluster_id: u64,
        tls: ServerTls,
    ) -> std::io::Result<Self> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Self::start_inner(members, cluster_id, Some(config)).await
    }

    async fn start_inner(
        members: usize,
        cluster_id: u64,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(members);
        let mut addrs = Vec::with_capacity(members);
        for _ in 0..members {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?.to_string());
            listeners.push(listener);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state = Arc::new(Mutex::new(PdState {
            cluster_id,
            reply_cluster_id: None,
            members: addrs.clone(),
            leader: Some(0),
            regions: BTreeMap::new(),
            stores: BTreeMap::new(),
            batch_scan: false,
            legacy_scan: false,
            scan_override: None,
            stalled: false,
            omit_headers: false,
            region_override: None,
            tso: (1 << 40, 0),
            calls: vec![Calls::default(); members],
        }));
        let mut shutdown = Vec::with_capacity(members);
        for (index, listener) in listeners.into_iter().enumerate() {
            let member = Member { index, scheme, state: Arc::clone(&state) };
            let (stop, stopped) = oneshot::channel::<()>();
            shutdown.push(Some(stop));
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &tls {
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
                    tracing::warn!(%error, "fake PD member stopped");
                }
            });
        }
        Ok(Self { state, addrs, scheme, shutdown })
    }

    /// The member addresses, `host:port`.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The member URLs, `http(s)://host:port`.
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("{}://{a}", self.scheme)).collect()
    }

    /// Runs `f` on the shared state.
    pub fn with<R>(&self, f: impl FnOnce(&mut PdState) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// Makes `member` the leader (`None`: no leader).
    pub fn set_leader(&self, member: Option<usize>) {
        self.with(|s| s.leader = member);
    }

    /// The calls `member` served so far.
    pub fn calls(&self, member: usize) -> Calls {
        self.with(|s| s.calls[member])
    }

    /// Calls served by all members together.
    pub fn total_calls(&self) -> Calls {
        self.with(|s| {
            s.calls.iter().fold(Calls::default(), |a, c| Calls {
                get_members: a.get_members + c.get_members,
                get_region: a.get_region + c.get_region,
                get_region_by_id: a.get_region_by_id + c.get_region_by_id,
                scan_regions: a.scan_regions + c.scan_regions,
                batch_scan_regions: a.batch_scan_regions + c.batch_scan_regions,
                get_store: a.get_store + c.get_store,
                get_all_stores: a.get_all_stores + c.get_all_stores,
                tso_streams: a.tso_streams + c.tso_streams,
                tso_requests: a.tso_requests + c.tso_requests,
                not_leader: a.not_leader + c.not_leader,
            })
        })
    }

    /// Replaces every region with `regions` (keyed by their start keys).
    pub fn set_regions(&self, regions: impl IntoIterator<Item = pdpb::Region>) {
        let regions = regions
            .into_iter()
            .map(|r| (r.region.as_ref().map(|m| m.start_key.clone()).unwrap_or_default(), r))
            .collect();
        self.with(|s| s.regions = regions);
    }

    /// Adds or replaces a store.
    pub fn put_store(&self, store: metapb::Store) {
        self.with(|s| s.stores.insert(store.id, store));
    }

    /// Stops serving on `member` (its listener closes; open connections end).
    pub fn stop(&mut self, member: usize) {
        if let Some(stop) = self.shutdown.get_mut(member).and_then(Option::take) {
            let _ = stop.send(());
        }
    }
}

impl Drop for FakePd {
    fn drop(&mut self) {
        for member in 0..self.shutdown.len() {
            self.stop(member);
        }
    }
}

/// A region for the fake PD: `[start, end)` (encoded bytes, empty for unbounded), epoch
/// `{version, conf_ver: 1}`, one voter per store in `stores` (peer id `id * 1000 + store`),
/// the first one leading.
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
pub fn split_regions(splits: &[EncodedKey], stores: &[u64]) -> Vec<pdpb::Region> {
    let mut bounds: Vec<&[u8]> = Vec::with_capacity(splits.len() + 2);
    bounds.push(b"");
    bounds.extend(splits.iter().map(EncodedKey::as_bytes));
    bounds.push(b"");
    bounds.windows(2).zip(1..).map(|(pair, id)| region(id, pair[0], pair[1], 1, stores)).collect()
}

/// An `Up` TiKV store at `address`.
pub fn store(id: u64, address: &str) -> metapb::Store {
    metapb::Store {
        id,
        address: address.to_owned(),
        version: "8.1.0".to_owned(),
        ..metapb::Store::default()
    }
}

/// One member's service.
struct Member {
    index: usize,
    scheme: &'static str,
    state: Arc<Mutex<PdState>>,
}

impl Member {
    /// Counts the call, then refuses it unless this member leads and the cluster id matches.
    /// Returns the response header (`None` when headers are omitted), or waits forever when the
    /// PD is stalled.
    async fn admit(
        &self,
        header: Option<&pdpb::RequestHeader>,
        count: impl FnOnce(&mut Calls),
    ) -> Result<Option<pdpb::ResponseHeader>, Status> {
        let (header, stalled) = {
            let mut s = lock(&self.state);
            count(&mut s.calls[self.index]);
            let header = check(&mut s, self.index, header)?;
            (header, s.stalled)
        };
        if stalled {
            core::future::pending::<()>().await;
        }
        Ok(header)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: i32) -> Vec<pdpb::Region> {
        let s = lock(&self.state);
        if let Some(list) = &s.scan_override {
            return list.clone();
        }
        let limit = if limit <= 0 { usize::MAX } else { limit as usize };
        let first = s
            .regions
            .range::<[u8], _>((core::ops::Bound::Unbounded, core::ops::Bound::Included(start)))
            .next_back()
            .filter(|(_, r)| {
                r.region.as_ref().is_some_and(|m| m.end_key.is_empty() || &m.end_key[..] > start)
            })
            .map(|(k, _)| k.clone());
        let from = first.unwrap_or_else(|| Bytes::copy_from_slice(start));
        s.regions
            .range::<[u8], _>((core::ops::Bound::Included(&from[..]), core::ops::Bound::Unbounded))
            .map(|(_, r)| r)
            .take_while(|r| {
                end.is_empty() || r.region.as_ref().is_some_and(|m| &m.start_key[..] < end)
            })
            .take(limit)
            .cloned()
            .collect()
    }

    fn get_region_where(&self, f: impl Fn(&metapb::Region) -> bool) -> Option<pdpb::Region> {
        let s = lock(&self.state);
        if let Some(region) = &s.region_override {
            return Some(region.clone());
        }
        s.regions.values().find(|r| r.region.as_ref().is_some_and(&f)).cloned()
    }
}

/// Checks leadership and the cluster id of a request; returns the response header (`None` when
/// headers are omitted).
fn check(
    s: &mut PdState,
    index: usize,
    header: Option<&pdpb::RequestHeader>,
) -> Result<Option<pdpb::ResponseHeader>, Status> {
    if s.leader != Some(index) {
        s.calls[index].not_leader += 1;
        return Err(Status::unavailable("not leader"));
    }
    let got = header.map_or(0, |h| h.cluster_id);
    if got != s.cluster_id {
        return Err(Status::failed_precondition(format!(
            "mismatch cluster id, need {} but got {got}",
            s.cluster_id
        )));
    }
    Ok((!s.omit_headers).then(|| response_header(s)))
}

fn response_header(s: &PdState) -> pdpb::ResponseHeader {
    pdpb::ResponseHeader { cluster_id: s.reply_cluster_id.unwrap_or(s.cluster_id), error: None }
}

fn error_header(s: &PdState, kind: pdpb::ErrorType, message: &str) -> pdpb::ResponseHeader {
    pdpb::ResponseHeader {
        error: Some(pdpb::Error { r#type: kind as i32, message: message.to_owned() }),
        ..response_header(s)
    }
}

#[tonic::async_trait]
impl Pd for Member {
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let mut s = lock(&self.state);
        s.calls[self.index].get_members += 1;
        let member = |i: usize, addr: &String| pdpb::Member {
            name: format!("pd-{i}"),
            member_id: i as u64 + 1,
            client_urls: vec![format!("{}://{addr}", self.scheme)],
            ..pdpb::Member::default()
        };
        let members: Vec<pdpb::Member> =
            s.members.iter().enumerate().map(|(i, a)| member(i, a)).collect();
        let leader = s.leader.and_then(|i| members.get(i).cloned());
        Ok(Response::new(pdpb::GetMembersResponse {
            header: Some(response_header(&s)),
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
        let s = lock(&self.state);
        Ok(Response::new(pdpb::GetClusterInfoResponse {
            header: Some(response_header(&s)),
            ..pdpb::GetClusterInfoResponse::default()
        }))
    }

    type TsoStream = Pin<Box<dyn Stream<Item = Result<pdpb::TsoResponse, Status>> + Send>>;

    async fn tso(
        &self,
        request: Request<tonic::Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        {
            let mut s = lock(&self.state);
            s.calls[self.index].tso_streams += 1;
            if s.leader != Some(self.index) {
                s.calls[self.index].not_leader += 1;
                return Err(Status::unavailable("not leader"));
            }
        }
        let state = Arc::clone(&self.state);
        let index = self.index;
        let responses = request.into_inner().map(move |request| {
            let request = request?;
            let mut s = lock(&state);
            s.calls[index].tso_requests += 1;
            let header = check(&mut s, index, request.header.as_ref())?;
            let count = i64::from(request.count);
            let (physical, logical) = s.tso;
            let (physical, logical) = if logical + count < 1 << 18 {
                (physical, logical + count)
            } else {
                (physical + 1, count)
            };
            s.tso = (physical, logical);
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
        let key = &request.region_key[..];
        let found = self.get_region_where(|m| {
            &m.start_key[..] <= key && (m.end_key.is_empty() || key < &m.end_key[..])
        });
        Ok(Response::new(region_response(header, found)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_region_by_id += 1).await?;
        let found = self.get_region_where(|m| m.id == request.region_id);
        Ok(Response::new(region_response(header, found)))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.scan_regions += 1).await?;
        let regions = self.scan(&request.start_key, &request.end_key, request.limit);
        let legacy = lock(&self.state).legacy_scan;
        let resp = if legacy {
            pdpb::ScanRegionsResponse {
                header,
                leaders: regions.iter().map(|r| r.leader.unwrap_or_default()).collect(),
                region_metas: regions.into_iter().filter_map(|r| r.region).collect(),
                regions: Vec::new(),
            }
        } else {
            pdpb::ScanRegionsResponse { header, regions, ..Default::default() }
        };
        Ok(Response::new(resp))
    }

    async fn batch_scan_regions(
        &self,
        request: Request<pdpb::BatchScanRegionsRequest>,
    ) -> Result<Response<pdpb::BatchScanRegionsResponse>, Status> {
        let request = request.into_inner();
        let served = {
            let mut s = lock(&self.state);
            s.calls[self.index].batch_scan_regions += 1;
            s.batch_scan
        };
        if !served {
            return Err(Status::unimplemented("BatchScanRegions"));
        }
        let header = self.admit(request.header.as_ref(), |_| {}).await?;
        let mut regions: Vec<pdpb::Region> = Vec::new();
        let mut left = if request.limit <= 0 { i32::MAX } else { request.limit };
        for range in &request.ranges {
            for region in self.scan(&range.start_key, &range.end_key, left) {
                let id = region.region.as_ref().map(|m| m.id);
                if !regions.iter().any(|r| r.region.as_ref().map(|m| m.id) == id) {
                    regions.push(region);
                    left -= 1;
                }
            }
        }
        Ok(Response::new(pdpb::BatchScanRegionsResponse { header, regions }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_store += 1).await?;
        let s = lock(&self.state);
        let resp = match s.stores.get(&request.store_id) {
            Some(store) => pdpb::GetStoreResponse { header, store: Some(store.clone()) },
            None => pdpb::GetStoreResponse {
                header: Some(error_header(
                    &s,
                    pdpb::ErrorType::Unknown,
                    &format!("invalid store ID {}, not found", request.store_id),
                )),
                store: None,
            },
        };
        Ok(Response::new(resp))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let request = request.into_inner();
        let header = self.admit(request.header.as_ref(), |c| c.get_all_stores += 1).await?;
        let s = lock(&self.state);
        let stores = s
            .stores
            .values()
            .filter(|st| {
                !(request.exclude_tombstone_stores
                    && st.state == metapb::StoreState::Tombstone as i32)
            })
            .cloned()
            .collect();
        Ok(Response::new(pdpb::GetAllStoresResponse { header, stores }))
    }
}

fn region_response(
    header: Option<pdpb::ResponseHeader>,
    found: Option<pdpb::Region>,
) -> pdpb::GetRegionResponse {
    let (region, leader) = found.map_or((None, None), |r| (r.region, r.leader));
    pdpb::GetRegionResponse { header, region, leader, ..Default::default() }
}
