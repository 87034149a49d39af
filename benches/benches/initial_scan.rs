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

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvfeed::{Client, Event};
use kvfeed_span::table::table_span;

mod loaded;

use loaded::TABLE;

const REGIONS: i64 = 12;

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
    let runtime = loaded::runtime();
    let rows = loaded::rows("KVFEED_SCAN_ROWS", 200_000);
    let setup = runtime.block_on(loaded::load(rows, REGIONS));
    let (cluster, start_ts) = (&setup.cluster, setup.before);
    let on = runtime.block_on(loaded::client(cluster, |_| {}));
    let off = runtime.block_on(loaded::client(cluster, |config| config.exactly_once = false));
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
