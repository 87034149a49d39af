//! The `pdpb.PD` server: one member, the leader, serving the cluster's regions, stores and TSO.
//!
//! Behaves as PD v8.1 does where a client can tell: `GetMembers` and `GetClusterInfo` answer
//! whatever the cluster id; every other call with a wrong cluster id is `FAILED_PRECONDITION`
//! "mismatch cluster id, need X but got Y"; an unknown region leaves `region` unset; an unknown
//! store is a header error `UNKNOWN` "invalid store ID". `ScanRegions` fills both the `regions`
//! list and the legacy `region_metas`/`leaders` arrays. `BatchScanRegions` is served (PD 8.5).

use std::sync::Arc;

use kvfeed_proto::metapb;
use kvfeed_proto::pdpb::pd_server::Pd;
use kvfeed_proto::pdpb::{self, RequestHeader, ResponseHeader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::region::RegionMeta;
use crate::state::{Shared, StoreState, lock};

/// The PD member id.
pub(crate) const MEMBER_ID: u64 = 1;

/// The PD service.
pub(crate) struct PdService {
    pub(crate) shared: Arc<Shared>,
}

impl PdService {
    fn check(&self, header: Option<&RequestHeader>) -> Result<(), Status> {
        let got = header.map_or(0, |h| h.cluster_id);
        if got == self.shared.cluster_id {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "mismatch cluster id, need {} but got {got}",
                self.shared.cluster_id
            )))
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: self.shared.cluster_id, error: None })
    }

    fn member(&self) -> pdpb::Member {
        pdpb::Member {
            name: "pd-sim".to_owned(),
            member_id: MEMBER_ID,
            peer_urls: vec![self.shared.pd_url.clone()],
            client_urls: vec![self.shared.pd_url.clone()],
            binary_version: STORE_VERSION.to_owned(),
            ..pdpb::Member::default()
        }
    }
}

fn pd_region(r: &RegionMeta) -> pdpb::Region {
    pdpb::Region { region: Some(r.to_proto()), leader: r.leader_proto(), ..pdpb::Region::default() }
}

/// The TiKV version PD reports for a store unless a test sets another.
pub(crate) const STORE_VERSION: &str = "8.5.0";

pub(crate) fn store_proto(id: u64, store: &StoreState) -> metapb::Store {
    metapb::Store {
        id,
        address: store.address.clone(),
        state: metapb::StoreState::Up as i32,
        version: store.version.clone(),
        ..metapb::Store::default()
    }
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        let m = self.member();
        Ok(Response::new(pdpb::GetMembersResponse {
            header: self.header(),
            members: vec![m.clone()],
            leader: Some(m.clone()),
            etcd_leader: Some(m),
            ..pdpb::GetMembersResponse::default()
        }))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<pdpb::GetClusterInfoRequest>,
    ) -> Result<Response<pdpb::GetClusterInfoResponse>, Status> {
        Ok(Response::new(pdpb::GetClusterInfoResponse {
            header: self.header(),
            service_modes: vec![pdpb::ServiceMode::PdSvcMode as i32],
            tso_urls: Vec::new(),
        }))
    }

    type TsoStream = ReceiverStream<Result<pdpb::TsoResponse, Status>>;

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = Arc::clone(&self.shared);
        let service = PdService { shared: Arc::clone(&shared) };
        tokio::spawn(async move {
            while let Ok(Some(req)) = stream.message().await {
                if let Err(status) = service.check(req.header.as_ref()) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let (physical, logical) = lock(&shared.state).tso.allocate(req.count);
                let resp = pdpb::TsoResponse {
                    header: service.header(),
                    count: req.count,
                    timestamp: Some(pdpb::Timestamp { physical, logical, suffix_bits: 0 }),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        let r = st.regions.locate_encoded(&req.region_key);
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: r.map(RegionMeta::to_proto),
            leader: r.and_then(RegionMeta::leader_proto),
            ..pdpb::GetRegionResponse::default()
        }))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        let r = st.regions.get(req.region_id);
        Ok(Response::new(pdpb::GetRegionResponse {
            header: self.header(),
            region: r.map(RegionMeta::to_proto),
            leader: r.and_then(RegionMeta::leader_proto),
            ..pdpb::GetRegionResponse::default()
        }))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
        let found = st.regions.scan(&req.start_key, &req.end_key, limit);
        Ok(Response::new(pdpb::ScanRegionsResponse {
            header: self.header(),
            region_metas: found.iter().map(|r| r.to_proto()).collect(),
            leaders: found.iter().map(|r| r.leader_proto().unwrap_or_default()).collect(),
            regions: found.iter().map(|r| pd_region(r)).collect(),
        }))
    }

    async fn batch_scan_regions(
        &self,
        request: Request<pdpb::BatchScanRegionsRequest>,
    ) -> Result<Response<pdpb::BatchScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
        let mut out: Vec<pdpb::Region> = Vec::new();
        let mut last_id = None;
        for range in &req.ranges {
            // Ask the table for no more than could still be used (one more: the first may repeat
            // the previous range's last region): a scan is O(limit), not O(regions).
            let wanted = if limit == 0 { 0 } else { (limit - out.len().min(limit)) + 1 };
            for r in st.regions.scan(&range.start_key, &range.end_key, wanted) {
                if limit != 0 && out.len() >= limit {
                    break;
                }
                if last_id == Some(r.id) {
                    continue;
                }
                last_id = Some(r.id);
                out.push(pd_region(r));
            }
        }
        Ok(Response::new(pdpb::BatchScanRegionsResponse { header: self.header(), regions: out }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        let Some(s) = st.stores.get(&req.store_id) else {
            let error = pdpb::Error {
                r#type: pdpb::ErrorType::Unknown as i32,
                message: "invalid store ID".to_owned(),
            };
            return Ok(Response::new(pdpb::GetStoreResponse {
                header: Some(ResponseHeader {
                    cluster_id: self.shared.cluster_id,
                    error: Some(error),
                }),
                store: None,
            }));
        };
        Ok(Response::new(pdpb::GetStoreResponse {
            header: self.header(),
            store: Some(store_proto(req.store_id, s)),
        }))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = request.into_inner();
        self.check(req.header.as_ref())?;
        let st = lock(&self.shared.state);
        Ok(Response::new(pdpb::GetAllStoresResponse {
            header: self.header(),
            stores: st.stores.iter().map(|(id, s)| store_proto(*id, s)).collect(),
        }))
    }
}
