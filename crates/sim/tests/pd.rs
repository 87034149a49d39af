//! The PD server through a raw tonic client: the live topology, and the knobs of a cluster's PD.

mod common;

use common::*;
use kvfeed_proto::pdpb::pd_client::PdClient;
use kvfeed_proto::pdpb::{self, RequestHeader};
use kvfeed_span::table::record_key;
use tokio_stream::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_apis_follow_the_topology() {
    let cluster = manual_cluster(3, vec![record_key(1, 0), record_key(2, 0)]).await;
    let mut pd = PdClient::new(channel(&cluster.pd_address()).await);
    let header =
        Some(RequestHeader { cluster_id: cluster.cluster_id(), ..RequestHeader::default() });

    let members = pd.get_members(pdpb::GetMembersRequest::default()).await.unwrap().into_inner();
    assert_eq!(members.header.unwrap().cluster_id, cluster.cluster_id());
    assert_eq!(members.members.len(), 1);
    assert_eq!(
        members.leader.unwrap().client_urls,
        vec![format!("http://{}", cluster.pd_address())]
    );
    let info =
        pd.get_cluster_info(pdpb::GetClusterInfoRequest::default()).await.unwrap().into_inner();
    assert_eq!(info.header.unwrap().cluster_id, cluster.cluster_id());

    // Wrong cluster id.
    let wrong = Some(RequestHeader { cluster_id: 1, ..RequestHeader::default() });
    let err = pd
        .get_region(pdpb::GetRegionRequest { header: wrong.clone(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Regions.
    let scan = pd
        .scan_regions(pdpb::ScanRegionsRequest { header: header.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.regions.len(), 3);
    assert_eq!(scan.region_metas.len(), 3);
    assert_eq!(scan.leaders.len(), 3);
    let local: Vec<_> = cluster.regions().iter().map(kvfeed_sim::RegionMeta::to_proto).collect();
    assert_eq!(scan.region_metas, local);
    let middle = cluster.region_of_raw(&record_key(1, 5)).unwrap();
    let got = pd
        .get_region(pdpb::GetRegionRequest {
            header: header.clone(),
            region_key: kvfeed_span::key::encode(&record_key(1, 5)).into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.region.unwrap().id, middle.id);
    assert_eq!(got.leader.unwrap().store_id, middle.leader_store);

    // A split is visible at once, by id and by scan.
    let (left, right) = cluster.split_region(middle.id, &record_key(1, 100)).unwrap();
    let by_id = pd
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header.clone(),
            region_id: left.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.region.unwrap(), left.to_proto());
    let batch = pd
        .batch_scan_regions(pdpb::BatchScanRegionsRequest {
            header: header.clone(),
            ranges: vec![pdpb::KeyRange {
                start_key: left.start.clone(),
                end_key: right.end.clone(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.regions.len(), 2);
    let limited = pd
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header.clone(),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(limited.regions.len(), 2);
    let none = pd
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: header.clone(),
            region_id: 424_242,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.region.is_none());

    // Stores.
    let store = pd
        .get_store(pdpb::GetStoreRequest { header: header.clone(), store_id: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(store.store.unwrap().address, cluster.store_address(2).unwrap());
    let unknown = pd
        .get_store(pdpb::GetStoreRequest { header: header.clone(), store_id: 99 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.header.unwrap().error.unwrap().r#type, pdpb::ErrorType::Unknown as i32);
    let all = pd
        .get_all_stores(pdpb::GetAllStoresRequest { header: header.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.stores.len(), 3);

    // TSO: one answer per request, the largest of the batch, increasing; shared with the sim.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut tso =
        pd.tso(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut last = cluster.now_ts();
    for count in [1, 10, 3] {
        tx.send(pdpb::TsoRequest { header: header.clone(), count, ..Default::default() })
            .await
            .unwrap();
        let r = tso.next().await.unwrap().unwrap();
        assert_eq!(r.count, count);
        let t = r.timestamp.unwrap();
        let ts = kvfeed_sim::compose(t.physical, t.logical);
        assert!(ts > last + u64::from(count) - 1);
        last = ts;
    }
    assert!(cluster.now_ts() > last);
    tx.send(pdpb::TsoRequest { header: wrong, count: 1, ..Default::default() }).await.unwrap();
    assert_eq!(tso.next().await.unwrap().unwrap_err().code(), tonic::Code::FailedPrecondition);
    cluster.shutdown().await;
}

#[tokio::test]
async fn pd_knobs_apply_to_a_cluster_pd() {
    let cluster = manual_cluster(1, Vec::new()).await;
    let mut pd = PdClient::new(channel(&cluster.pd_address()).await);
    let header =
        Some(RequestHeader { cluster_id: cluster.cluster_id(), ..RequestHeader::default() });

    // PD 8.1: no BatchScanRegions.
    cluster.with_pd(|k| k.batch_scan = false);
    let err = pd
        .batch_scan_regions(pdpb::BatchScanRegionsRequest {
            header: header.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // The legacy layout only.
    cluster.with_pd(|k| k.scan_layout = kvfeed_sim::ScanLayout::Legacy);
    let scan = pd
        .scan_regions(pdpb::ScanRegionsRequest { header: header.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(scan.regions.is_empty());
    assert_eq!((scan.region_metas.len(), scan.leaders.len()), (1, 1));

    // No leader: "not leader".
    cluster.with_pd(|k| k.leader = None);
    let err =
        pd.get_region(pdpb::GetRegionRequest { header, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    let calls = cluster.pd_calls();
    assert_eq!((calls.batch_scan_regions, calls.scan_regions), (1, 1));
    assert_eq!((calls.get_region, calls.not_leader), (1, 1));
}
