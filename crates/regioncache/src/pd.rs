//! The PD client API: [`PdClient`], TSO, region and store look-ups, each a call through the
//! shared connection ([`crate::conn`]) with its answer converted and checked.

use core::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use kvfeed_proto::pdpb;
use kvfeed_span::Span;

use crate::config::PdConfig;
use crate::conn::Conn;
use crate::convert;
use crate::error::{Error, PdErrorKind};
use crate::meta::{Region, RegionId, Store, StoreId, StoreState};
use crate::tso::TsoHandle;

/// A client of a PD cluster. Cheap to clone: clones share connections, the leader and the TSO
/// stream.
#[derive(Clone)]
pub struct PdClient {
    conn: Arc<Conn>,
    tso: TsoHandle,
}

impl core::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PdClient")
            .field("cluster_id", &self.conn.known_cluster_id())
            .field("leader", &self.leader_addr())
            .finish()
    }
}

impl PdClient {
    /// Connects: discovers the PD leader (retrying as configured) and learns the cluster id.
    /// Must be called within a tokio runtime, which the client's TSO task then runs on.
    pub async fn connect(config: PdConfig) -> Result<Self, Error> {
        let conn = Arc::new(Conn::new(config)?);
        conn.call("GetMembers", |_, _| async { Ok(tonic::Response::new(())) }).await?;
        let tso = TsoHandle::spawn(Arc::clone(&conn));
        Ok(Self { conn, tso })
    }

    /// The cluster id (learned at connect time).
    pub fn cluster_id(&self) -> u64 {
        self.conn.cluster_id()
    }

    /// The address of the PD leader currently used, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        self.conn.leader_addr()
    }

    /// A fresh timestamp from PD's TSO: `physical_ms << 18 | logical`. Timestamps handed out by
    /// one client strictly increase. Concurrent requests are batched into one TSO round trip.
    pub async fn get_ts(&self) -> Result<u64, Error> {
        self.tso.get_ts().await
    }

    /// The region containing the encoded `key`, or `None` if PD knows none. An answer that does
    /// not contain `key` is [`Error::InvalidResponse`].
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<Region>, Error> {
        let wanted = key;
        let key = Bytes::copy_from_slice(key);
        let resp = self
            .conn
            .call("GetRegion", move |mut client, header| {
                let request = pdpb::GetRegionRequest {
                    header: Some(header),
                    region_key: key.clone(),
                    need_buckets: false,
                };
                async move { client.get_region(request).await }
            })
            .await;
        region_response("GetRegion", resp, |region| {
            if region.contains_key(wanted) {
                Ok(())
            } else {
                Err(format!(
                    "asked for key {wanted:?}, got region {} over {:?}",
                    region.id(),
                    region.span()
                ))
            }
        })
    }

    /// The region with this id, or `None` if PD knows none. An answer with another id is
    /// [`Error::InvalidResponse`].
    pub async fn get_region_by_id(&self, id: RegionId) -> Result<Option<Region>, Error> {
        let resp = self
            .conn
            .call("GetRegionByID", move |mut client, header| {
                let request = pdpb::GetRegionByIdRequest {
                    header: Some(header),
                    region_id: id,
                    need_buckets: false,
                };
                async move { client.get_region_by_id(request).await }
            })
            .await;
        region_response("GetRegionByID", resp, |region| {
            if region.id() == id {
                Ok(())
            } else {
                Err(format!("asked for region {id}, got region {}", region.id()))
            }
        })
    }

    /// The regions overlapping `span`, in key order, at most `limit` of them (`limit` is clamped
    /// to `1..=i32::MAX`). Uses `BatchScanRegions` while PD serves it and falls back to
    /// `ScanRegions` for good once PD answers `UNIMPLEMENTED` (PD before 8.5). The list is
    /// checked: regions valid, sorted, disjoint and overlapping `span`.
    pub async fn scan_regions(&self, span: &Span, limit: usize) -> Result<Vec<Region>, Error> {
        let limit = limit.clamp(1, i32::MAX as usize);
        if !self.conn.batch_scan_unsupported.load(Ordering::Relaxed) {
            match self.batch_scan_regions(span, limit).await {
                Err(Error::Unimplemented { .. }) => {
                    tracing::debug!("PD does not serve BatchScanRegions, using ScanRegions");
                    self.conn.batch_scan_unsupported.store(true, Ordering::Relaxed);
                }
                result => return result,
            }
        }
        let (start, end) = span_bytes(span);
        let resp = self
            .conn
            .call("ScanRegions", move |mut client, header| {
                let request = pdpb::ScanRegionsRequest {
                    header: Some(header),
                    start_key: start.clone(),
                    end_key: end.clone(),
                    limit: limit as i32,
                };
                async move { client.scan_regions(request).await }
            })
            .await?;
        convert::region_list(&convert::scan_response(resp), span, limit)
    }

    /// `BatchScanRegions` over one range.
    async fn batch_scan_regions(&self, span: &Span, limit: usize) -> Result<Vec<Region>, Error> {
        let (start, end) = span_bytes(span);
        let resp = self
            .conn
            .call("BatchScanRegions", move |mut client, header| {
                let request = pdpb::BatchScanRegionsRequest {
                    header: Some(header),
                    need_buckets: false,
                    ranges: vec![pdpb::KeyRange { start_key: start.clone(), end_key: end.clone() }],
                    limit: limit as i32,
                    contain_all_key_range: false,
                };
                async move { client.batch_scan_regions(request).await }
            })
            .await?;
        convert::region_list(&convert::pd_regions(resp.regions), span, limit)
    }

    /// The store with this id. A store PD does not know is [`Error::StoreNotFound`]; a
    /// tombstone is [`Error::StoreTombstone`].
    pub async fn get_store(&self, id: StoreId) -> Result<Store, Error> {
        let resp = self
            .conn
            .call("GetStore", move |mut client, header| {
                let request = pdpb::GetStoreRequest { header: Some(header), store_id: id };
                async move { client.get_store(request).await }
            })
            .await
            .map_err(|e| match e {
                Error::Pd { kind: PdErrorKind::StoreTombstone, .. } => {
                    Error::StoreTombstone { store_id: id }
                }
                Error::Pd { kind: PdErrorKind::Unknown, message, .. }
                    if message.contains("invalid store ID") =>
                {
                    Error::StoreNotFound { store_id: id }
                }
                e => e,
            })?;
        let store = convert::store(resp.store.ok_or(Error::StoreNotFound { store_id: id })?)?;
        if store.id != id {
            return Err(Error::InvalidResponse {
                method: "GetStore",
                reason: format!("asked for store {id}, got store {}", store.id),
            });
        }
        if store.state == StoreState::Tombstone {
            return Err(Error::StoreTombstone { store_id: id });
        }
        Ok(store)
    }

    /// Every store PD knows, tombstones left out when `exclude_tombstones`.
    pub async fn get_all_stores(&self, exclude_tombstones: bool) -> Result<Vec<Store>, Error> {
        let resp = self
            .conn
            .call("GetAllStores", move |mut client, header| {
                let request = pdpb::GetAllStoresRequest {
                    header: Some(header),
                    exclude_tombstone_stores: exclude_tombstones,
                };
                async move { client.get_all_stores(request).await }
            })
            .await?;
        resp.stores.into_iter().map(convert::store).collect()
    }

    /// The cluster's GC safe point: MVCC versions older than the newest one at or below it may
    /// already be gone, so nothing may be read (or subscribed) below it.
    pub async fn gc_safe_point(&self) -> Result<u64, Error> {
        let resp = self
            .conn
            .call("GetGCSafePoint", move |mut client, header| {
                let request = pdpb::GetGcSafePointRequest { header: Some(header) };
                async move { client.get_gc_safe_point(request).await }
            })
            .await?;
        Ok(resp.safe_point)
    }

    /// Sets the service GC safe point of `service_id` to `safe_point` for `ttl_secs` seconds
    /// (GC keeps every version needed to read at `safe_point` while it holds), or removes it when
    /// `ttl_secs <= 0`. PD answers with the minimum over every service: when its
    /// [`min_safe_point`](ServiceSafePoint::min_safe_point) is above `safe_point`, PD refused the
    /// update ([`ServiceSafePoint::refuses`]) and history below the minimum may be gone.
    pub async fn update_service_safe_point(
        &self,
        service_id: &str,
        ttl_secs: i64,
        safe_point: u64,
    ) -> Result<ServiceSafePoint, Error> {
        let service = Bytes::copy_from_slice(service_id.as_bytes());
        let resp = self
            .conn
            .call("UpdateServiceGCSafePoint", move |mut client, header| {
                let request = pdpb::UpdateServiceGcSafePointRequest {
                    header: Some(header),
                    service_id: service.clone(),
                    ttl: ttl_secs,
                    safe_point,
                };
                async move { client.update_service_gc_safe_point(request).await }
            })
            .await?;
        Ok(ServiceSafePoint {
            service_id: String::from_utf8_lossy(&resp.service_id).into_owned(),
            ttl_secs: resp.ttl,
            min_safe_point: resp.min_safe_point,
        })
    }
}

/// PD's answer to a service GC safe-point update: the minimum service safe point now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceSafePoint {
    /// The service holding the minimum (not necessarily the caller).
    pub service_id: String,
    /// Seconds that minimum has left.
    pub ttl_secs: i64,
    /// The minimum service safe point.
    pub min_safe_point: u64,
}

impl ServiceSafePoint {
    /// Whether this answer refuses an update to `safe_point`: the minimum is above it.
    pub fn refuses(&self, safe_point: u64) -> bool {
        self.min_safe_point > safe_point
    }
}

/// The region of a `GetRegion`/`GetRegionByID` answer: unset (or `REGION_NOT_FOUND`) is `None`.
/// A region that does not answer the request (`matches` is false: it does not contain the key,
/// or has another id) is [`Error::InvalidResponse`].
fn region_response(
    method: &'static str,
    resp: Result<pdpb::GetRegionResponse, Error>,
    matches: impl FnOnce(&Region) -> Result<(), String>,
) -> Result<Option<Region>, Error> {
    let region = match resp {
        Ok(resp) => match &resp.region {
            None => return Ok(None),
            Some(region) => convert::region(region, resp.leader.as_ref())?,
        },
        Err(Error::Pd { kind: PdErrorKind::RegionNotFound, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    matches(&region).map_err(|reason| Error::InvalidResponse { method, reason })?;
    Ok(Some(region))
}

/// The bounds of a span as request bytes.
fn span_bytes(span: &Span) -> (Bytes, Bytes) {
    (Bytes::copy_from_slice(span.start().as_bytes()), Bytes::copy_from_slice(span.end().as_bytes()))
}
