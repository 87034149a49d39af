//! A subscription's incremental scan of a table through the simulator over loopback, with
//! duplicate suppression on and off in the same run:
//!
//! - `initial_scan/exactly_once`: [`kvfeed::Client::subscribe`] from below a table of
//!   `KVFEED_SCAN_ROWS` rows (default 200k; 19-byte keys, 100-byte values; 3 stores, 12
//!   regions), read until every row arrived, with [`Config::exactly_once`] on (the default:
//!   each delivered row is remembered until the resolved ts passes it);
//! - `initial_scan/at_least_once`: the same with it off.
//!
//! Throughput is in rows; `cargo xtask bench initial_scan` runs it.

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed::{Client, Config, Event};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
use kvfeed_span::table::{record_key, table_span};

const TABLE: i64 = 1;
const REGIONS: i64 = 12;

fn rows() -> i64 {
    std::env::var("KVFEED_SCAN_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

async fn client(cluster: &Cluster, exactly_once: bool) -> Client {
    let mut config = Config::new([cluster.pd_address()]);
    config.exactly_once = exactly_once;
    let client = Client::connect(config).await.expect("connect");
    tokio::spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    client
}

async fn scan(client: &Client, start_ts: u64, rows: u64) {
    let mut sub = client.subscribe(table_span(TABLE), start_ts).await.expect("subscribe");
    let mut seen = 0;
    while seen < rows {
        if let Event::Row(row) = sub.recv().await.expect("open").expect("no error") {
            std::hint::black_box(row);
            seen += 1;
        }
    }
}

fn initial_scan(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rows();
    let (cluster, start_ts) = runtime.block_on(async {
        let splits = (1..REGIONS).map(|i| record_key(TABLE, i * rows / REGIONS)).collect();
        let cluster = Cluster::start(ClusterConfig {
            stores: 3,
            split_keys: splits,
            resolved_ts_interval: None,
            record_commits: false,
            ..ClusterConfig::default()
        })
        .await
        .expect("start the simulator");
        let start_ts = cluster.now_ts();
        let value = Bytes::from(vec![b'v'; 100]);
        cluster.bulk_load((0..rows).map(|h| Mutation::put(record_key(TABLE, h), value.clone())));
        (cluster, start_ts)
    });
    let on = runtime.block_on(client(&cluster, true));
    let off = runtime.block_on(client(&cluster, false));
    let mut group = c.benchmark_group("initial_scan");
    group.throughput(Throughput::Elements(rows as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("exactly_once", |b| {
        b.iter(|| runtime.block_on(scan(&on, start_ts, rows as u64)));
    });
    group.bench_function("at_least_once", |b| {
        b.iter(|| runtime.block_on(scan(&off, start_ts, rows as u64)));
    });
    group.finish();
    on.shutdown();
    off.shutdown();
}

criterion_group! {
    name = benches;
    config = kvfeed_benches::criterion_config();
    targets = initial_scan
}
criterion_main!(benches);
