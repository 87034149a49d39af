//! Snapshot-read throughput through the simulator over loopback, beside a bare client in the
//! same run:
//!
//! - `snapshot/client`: [`kvfeed::Client::snapshot`] of a table of `KVFEED_SNAPSHOT_ROWS` rows
//!   (default 1M; 19-byte keys, 100-byte values) over 3 stores and 24 regions, drained, with the
//!   default settings (pages of 1024 keys, 3 pages per store at once, 16 regions read ahead);
//! - `snapshot/client_one_page_at_a_time`: the same with one page per store at once;
//! - `snapshot/bare_kvscan_loop`: a tonic `TikvClient` reading the same regions from their
//!   leaders one `KvScan` page of 1024 after the other (no region cache, no ordering, no lock
//!   handling, no quota): the transport's floor on this machine.
//!
//! Throughput is in rows; `cargo xtask bench snapshot` runs it.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed::Client;
use kvfeed_proto::kvrpcpb;
use kvfeed_proto::metapb;
use kvfeed_proto::tikvpb::tikv_client::TikvClient;
use kvfeed_sim::Cluster;
use kvfeed_span::table::table_span;

mod loaded;

use loaded::TABLE;

const REGIONS: i64 = 24;
const PAGE: u32 = 1024;

async fn read_with_client(client: &Client, ts: u64) -> u64 {
    let mut snapshot = client.snapshot(table_span(TABLE), ts).await.expect("snapshot");
    let mut rows = 0;
    while let Some(row) = snapshot.recv().await {
        std::hint::black_box(row.expect("row"));
        rows += 1;
    }
    rows
}

async fn read_bare(cluster: &Cluster, ts: u64) -> u64 {
    let mut rows = 0;
    let mut clients = std::collections::HashMap::new();
    for region in cluster.regions() {
        let address = cluster.store_address(region.leader_store).expect("store");
        if !clients.contains_key(&address) {
            let client = TikvClient::connect(format!("http://{address}")).await.expect("connect");
            clients.insert(address.clone(), client.max_decoding_message_size(256 << 20));
        }
        let kv = clients.get_mut(&address).expect("connected");
        let leader = region.peers.iter().find(|p| p.store_id == region.leader_store);
        let context = kvrpcpb::Context {
            region_id: region.id,
            region_epoch: Some(region.epoch()),
            peer: leader.map(|p| metapb::Peer {
                id: p.id,
                store_id: p.store_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut start = if region.start.is_empty() {
            Vec::new()
        } else {
            kvfeed_span::key::decode(&region.start).expect("raw start")
        };
        let end = if region.end.is_empty() {
            Vec::new()
        } else {
            kvfeed_span::key::decode(&region.end).expect("raw end")
        };
        loop {
            let page = kv
                .kv_scan(kvrpcpb::ScanRequest {
                    context: Some(context.clone()),
                    start_key: start.clone().into(),
                    end_key: end.clone().into(),
                    limit: PAGE,
                    version: ts,
                    ..Default::default()
                })
                .await
                .expect("scan")
                .into_inner();
            let n = page.pairs.len();
            rows += n as u64;
            let Some(last) = page.pairs.last() else { break };
            start = last.key.to_vec();
            start.push(0);
            std::hint::black_box(&page);
            if n < PAGE as usize {
                break;
            }
        }
    }
    rows
}

fn snapshot(c: &mut Criterion) {
    let runtime = loaded::runtime();
    let rows = loaded::rows("KVFEED_SNAPSHOT_ROWS", 1_000_000);
    let setup = runtime.block_on(loaded::load(rows, REGIONS));
    let (ts, expected) = (setup.after, rows as u64);
    let default = runtime.block_on(loaded::client(&setup.cluster, |_| {}));
    let one = runtime.block_on(loaded::client(&setup.cluster, |config| {
        config.snapshot_store_concurrency = 1;
    }));
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Elements(expected));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("client", |b| {
        b.iter(|| assert_eq!(runtime.block_on(read_with_client(&default, ts)), expected));
    });
    group.bench_function("client_one_page_at_a_time", |b| {
        b.iter(|| assert_eq!(runtime.block_on(read_with_client(&one, ts)), expected));
    });
    group.bench_function("bare_kvscan_loop", |b| {
        b.iter(|| assert_eq!(runtime.block_on(read_bare(&setup.cluster, ts)), expected));
    });
    group.finish();
    default.shutdown();
    one.shutdown();
}

criterion_group! {
    name = benches;
    config = kvfeed_benches::criterion_config();
    targets = snapshot
}
criterion_main!(benches);
