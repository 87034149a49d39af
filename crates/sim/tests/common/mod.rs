//! Raw tonic clients for the simulator's tests (no kvfeed client involved).
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

use std::time::Duration;

use kvfeed_proto::cdcpb::change_data_client::ChangeDataClient;
use kvfeed_proto::cdcpb::{
    ChangeDataEvent, ChangeDataRequest, Event, Header, change_data_request, event,
};
use kvfeed_proto::tikvpb::tikv_client::TikvClient;
use kvfeed_proto::{kvrpcpb, metapb};
use kvfeed_sim::{Cluster, ClusterConfig, RegionMeta};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// Safety net for waits on a stream; never a synchronisation device.
pub const WAIT: Duration = Duration::from_secs(5);

pub async fn manual_cluster(stores: usize, splits: Vec<Vec<u8>>) -> Cluster {
    Cluster::start(ClusterConfig {
        stores,
        split_keys: splits,
        resolved_ts_interval: None,
        ..ClusterConfig::default()
    })
    .await
    .expect("start cluster")
}

pub async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect")
}

pub struct Feed {
    pub tx: mpsc::Sender<ChangeDataRequest>,
    pub rx: Streaming<ChangeDataEvent>,
    /// Events received but not yet consumed.
    pub pending: std::collections::VecDeque<ChangeDataEvent>,
}

pub enum Kind {
    V1,
    V2(Option<&'static str>),
}

impl Feed {
    pub async fn open(addr: &str, kind: Kind) -> Result<Self, Status> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut client = ChangeDataClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let response = match kind {
            Kind::V1 => client.event_feed(request).await,
            Kind::V2(features) => {
                if let Some(f) = features {
                    request.metadata_mut().insert("features", f.parse().unwrap());
                }
                client.event_feed_v2(request).await
            }
        }?;
        Ok(Self { tx, rx: response.into_inner(), pending: Default::default() })
    }

    pub async fn v2(cluster: &Cluster, store: u64) -> Self {
        Self::open(&cluster.store_address(store).unwrap(), Kind::V2(Some("stream-multiplexing")))
            .await
            .expect("open EventFeedV2")
    }

    pub async fn send(&self, req: ChangeDataRequest) {
        self.tx.send(req).await.expect("send request");
    }

    /// The next message, or the stream's end/error.
    pub async fn recv(&mut self) -> Result<Option<ChangeDataEvent>, Status> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("timed out waiting for the stream")
    }

    pub async fn next(&mut self) -> ChangeDataEvent {
        self.recv().await.expect("stream error").expect("stream ended")
    }

    /// Next `Event`s (not resolved ts) flattened, one message at a time.
    pub async fn next_events(&mut self) -> Vec<Event> {
        loop {
            let m = self.next().await;
            if !m.events.is_empty() {
                return m.events;
            }
        }
    }

    /// Collects events until one satisfies `stop` (bounded by the wait).
    pub async fn events_until(&mut self, mut stop: impl FnMut(&Event) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let m = self.next().await;
            for e in m.events {
                let done = stop(&e);
                out.push(e);
                if done {
                    return out;
                }
            }
        }
        panic!("no matching event");
    }

    /// The next error event.
    pub async fn next_error(&mut self) -> Event {
        self.events_until(|e| matches!(e.event, Some(event::Event::Error(_)))).await.pop().unwrap()
    }
}

pub fn header(cluster: &Cluster) -> Option<Header> {
    Some(Header { cluster_id: cluster.cluster_id(), ticdc_version: "8.1.0".to_owned() })
}

pub fn register(
    cluster: &Cluster,
    region: &RegionMeta,
    request_id: u64,
    checkpoint_ts: u64,
) -> ChangeDataRequest {
    ChangeDataRequest {
        header: header(cluster),
        region_id: region.id,
        region_epoch: Some(region.epoch()),
        checkpoint_ts,
        start_key: region.start.clone(),
        end_key: region.end.clone(),
        request_id,
        request: Some(change_data_request::Request::Register(change_data_request::Register {})),
        ..ChangeDataRequest::default()
    }
}

pub fn deregister(request_id: u64, region_id: u64) -> ChangeDataRequest {
    ChangeDataRequest {
        region_id,
        request_id,
        request: Some(change_data_request::Request::Deregister(change_data_request::Deregister {})),
        ..ChangeDataRequest::default()
    }
}

pub fn rows(events: &[Event]) -> Vec<event::Row> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(event::Event::Entries(en)) => Some(en.entries.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn is_initialized(e: &Event) -> bool {
    matches!(&e.event, Some(event::Event::Entries(en))
        if en.entries.iter().any(|r| r.r#type == event::LogType::Initialized as i32))
}

pub fn error_of(e: &Event) -> &kvfeed_proto::cdcpb::Error {
    match &e.event {
        Some(event::Event::Error(err)) => err,
        other => panic!("not an error: {other:?}"),
    }
}

/// Registers and waits for INITIALIZED; returns the scan's events.
pub async fn register_initialized(
    feed: &mut Feed,
    cluster: &Cluster,
    region: &RegionMeta,
    request_id: u64,
    checkpoint: u64,
) -> Vec<Event> {
    feed.send(register(cluster, region, request_id, checkpoint)).await;
    let id = region.id;
    feed.events_until(|e| e.region_id == id && e.request_id == request_id && is_initialized(e))
        .await
}

pub fn context(region: &RegionMeta) -> Option<kvrpcpb::Context> {
    Some(kvrpcpb::Context {
        region_id: region.id,
        region_epoch: Some(region.epoch()),
        peer: region
            .peers
            .iter()
            .find(|p| p.store_id == region.leader_store)
            .map(|p| metapb::Peer { id: p.id, store_id: p.store_id, ..metapb::Peer::default() }),
        ..kvrpcpb::Context::default()
    })
}

pub async fn tikv(cluster: &Cluster, store: u64) -> TikvClient<Channel> {
    TikvClient::new(channel(&cluster.store_address(store).unwrap()).await)
}

/// KvScanLock on the region's leader connection `kv`: locks with start ts <= `max_version`, at
/// most 1024 (the page size a lock resolver uses).
pub async fn scan_locks(
    kv: &mut TikvClient<Channel>,
    region: &RegionMeta,
    max_version: u64,
) -> kvrpcpb::ScanLockResponse {
    kv.kv_scan_lock(kvrpcpb::ScanLockRequest {
        context: context(region),
        max_version,
        limit: 1024,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}
