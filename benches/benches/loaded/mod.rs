//! What the benchmarks over a loaded simulator share (`snapshot`, `initial_scan`): a table of
//! `rows` rows (19-byte record keys, 100-byte values) bulk-loaded into a simulator of 3 stores
//! split into `regions` regions, the runtime they run on, and a running client.
// Each bench compiles this module on its own and uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use kvfeed::{Client, Config};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
use kvfeed_span::table::record_key;

/// The table's id.
pub const TABLE: i64 = 1;

/// A simulator holding the loaded table.
pub struct Loaded {
    pub cluster: Cluster,
    /// A ts before the load (a subscription from it scans every row).
    pub before: u64,
    /// A ts after the load (a snapshot at it reads every row).
    pub after: u64,
}

/// The row count: `env` if set, else `default`.
pub fn rows(env: &str, default: i64) -> i64 {
    std::env::var(env).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Two worker threads, as the machine has cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts the simulator and loads the table.
pub async fn load(rows: i64, regions: i64) -> Loaded {
    let splits = (1..regions).map(|i| record_key(TABLE, i * rows / regions)).collect();
    let cluster = Cluster::start(ClusterConfig {
        stores: 3,
        split_keys: splits,
        resolved_ts_interval: None,
        record_commits: false,
        ..ClusterConfig::default()
    })
    .await
    .expect("start the simulator");
    let before = cluster.now_ts();
    let value = Bytes::from(vec![b'v'; 100]);
    cluster.bulk_load((0..rows).map(|h| Mutation::put(record_key(TABLE, h), value.clone())));
    let after = cluster.now_ts();
    Loaded { cluster, before, after }
}

/// A client of the simulator, `tweak`ed, running.
pub async fn client(cluster: &Cluster, tweak: impl FnOnce(&mut Config)) -> Client {
    let mut config = Config::new([cluster.pd_address()]);
    tweak(&mut config);
    let client = Client::connect(config).await.expect("connect");
    tokio::spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    client
}
