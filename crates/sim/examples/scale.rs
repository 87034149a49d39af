//! Holds many regions (default 1,000,000) in the simulator, registers every one of them on one
//! `EventFeedV2` stream, serves one resolved-ts round, and prints the memory per region.
//!
//! `cargo run --release -p kvfeed-sim --example scale -- 1000000` (Linux: RSS from /proc).

use std::time::Instant;

use kvfeed_proto::cdcpb::change_data_client::ChangeDataClient;
use kvfeed_proto::cdcpb::{ChangeDataRequest, Header, change_data_request, event};
use kvfeed_sim::{Cluster, ClusterConfig};
use kvfeed_span::table::record_key;
use tokio_stream::wrappers::ReceiverStream;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let before = rss_bytes();
    let t = Instant::now();
    let cluster = Cluster::start(ClusterConfig {
        stores: 1,
        replicas: 1,
        split_keys: (1..n as i64).map(|h| record_key(1, h)).collect(),
        resolved_ts_interval: None,
        record_commits: false,
        max_pending_scans: usize::MAX,
        ..ClusterConfig::default()
    })
    .await?;
    let after_regions = rss_bytes();
    println!(
        "{n} regions in {:?}: {} bytes/region",
        t.elapsed(),
        after_regions.saturating_sub(before) / n as u64
    );

    let channel = tonic::transport::Channel::from_shared(format!(
        "http://{}",
        cluster.store_address(1).ok_or("no store")?
    ))?
    .connect()
    .await?;
    let mut client = ChangeDataClient::new(channel).max_decoding_message_size(256 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert("features", "stream-multiplexing".parse()?);
    let mut stream = client.event_feed_v2(request).await?.into_inner();
    let header = Header { cluster_id: cluster.cluster_id(), ticdc_version: "8.1.0".to_owned() };
    let regions = cluster.regions();
    let t = Instant::now();
    tokio::spawn(async move {
        for r in regions {
            let req = ChangeDataRequest {
                header: Some(header.clone()),
                region_id: r.id,
                region_epoch: Some(r.epoch()),
                start_key: r.start.clone(),
                end_key: r.end.clone(),
                request_id: 1,
                request: Some(change_data_request::Request::Register(
                    change_data_request::Register {},
                )),
                ..ChangeDataRequest::default()
            };
            if tx.send(req).await.is_err() {
                return;
            }
        }
        // Keep the request side open.
        std::future::pending::<()>().await;
    });
    let mut initialized = 0;
    while initialized < n {
        let Some(m) = stream.message().await? else { return Err("stream ended".into()) };
        for e in m.events {
            if let Some(event::Event::Entries(en)) = e.event {
                initialized += en
                    .entries
                    .iter()
                    .filter(|r| r.r#type == event::LogType::Initialized as i32)
                    .count();
            }
        }
    }
    let after_regs = rss_bytes();
    println!(
        "{n} registrations initialized in {:?}: {} bytes/registration (sim and client together)",
        t.elapsed(),
        after_regs.saturating_sub(after_regions) / n as u64
    );

    let t = Instant::now();
    cluster.tick_resolved_ts();
    let mut covered = 0;
    let mut messages = 0;
    while covered < n {
        let Some(m) = stream.message().await? else { return Err("stream ended".into()) };
        if let Some(r) = m.resolved_ts {
            covered += r.regions.len();
            messages += 1;
        }
    }
    println!("one resolved-ts round for {n} regions: {messages} batches in {:?}", t.elapsed());
    println!("total RSS {} MiB", rss_bytes() >> 20);
    cluster.shutdown().await;
    Ok(())
}
