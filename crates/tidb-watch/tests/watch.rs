//! The watcher against the simulated cluster over loopback: TiDB tables by name, decoded rows
//! checked column by column against what the sim's TiDB workload wrote, through add and drop
//! column, rename and truncate jobs, with regions split and leaders moved on the way.

use std::time::Duration;

use kvfeed::{Client, Config};
use kvfeed_sim::{Cluster, ClusterConfig, TidbConfig, TidbWorkload, verify_tidb};
use kvfeed_span::table::{record_key, record_prefix};
use kvfeed_tidb_watch::{TableEvent, TableName, WatchError, Watcher};

/// A safety net for waits, never a synchronisation device.
const DEADLINE: Duration = Duration::from_secs(120);

async fn start(tables: &[i64]) -> (Cluster, Client, tokio::task::JoinHandle<()>) {
    let mut split_keys: Vec<Vec<u8>> = tables.iter().map(|&t| record_prefix(t)).collect();
    split_keys.extend(tables.iter().map(|&t| record_key(t, 50)));
    split_keys.sort();
    let cluster = Cluster::start(ClusterConfig {
        stores: 3,
        replicas: 3,
        split_keys,
        resolved_ts_interval: Some(Duration::from_millis(50)),
        ..ClusterConfig::default()
    })
    .await
    .expect("start the simulated cluster");
    let mut config = Config::new([cluster.pd_address()]);
    config.advance_interval = Duration::from_millis(20);
    let client = Client::connect(config).await.expect("connect");
    let runner = {
        let client = client.clone();
        tokio::spawn(async move {
            let _ = client.run().await;
        })
    };
    (cluster, client, runner)
}

/// Reads the watcher until its resolved ts reaches `target`, as JSON lines.
async fn read_until(watcher: &mut Watcher, target: u64, lines: &mut Vec<serde_json::Value>) {
    let read = async {
        while let Some(event) = watcher.recv().await {
            let event = event.expect("the watcher runs");
            lines.push(serde_json::from_str(&event.to_json_line()).expect("a JSON line"));
            if matches!(event, TableEvent::Resolved(ts) if ts >= target) {
                return;
            }
        }
        panic!("the watcher ended");
    };
    tokio::time::timeout(DEADLINE, read).await.expect("the watcher resolves the workload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_rows_match_what_was_written_across_ddl() {
    let tables = [100, 101];
    let (cluster, client, runner) = start(&tables).await;
    let mut workload = TidbWorkload::new(TidbConfig {
        seed: 7,
        table_ids: tables.to_vec(),
        keys_per_table: 100,
        ddl_every: 12,
        ..TidbConfig::default()
    });
    let bootstrapped = workload.bootstrap(&cluster).expect("write the schema");
    let names: Vec<TableName> =
        workload.table_names().iter().map(|n| TableName::parse(n).unwrap()).collect();
    let mut watcher = Watcher::start(&client, &names, bootstrapped).await.expect("start");
    let mut lines = Vec::new();
    for round in 0..6 {
        for _ in 0..80 {
            workload.step(&cluster);
        }
        // Regions move under the watcher: a split and a leader transfer per round.
        let regions = cluster.regions();
        let region = &regions[round % regions.len()];
        let _ = cluster.transfer_leader(region.id, 1 + (round as u64 % 3));
        read_until(&mut watcher, cluster.now_ts(), &mut lines).await;
    }
    let report = verify_tidb(workload.expected(), &workload.table_names(), bootstrapped, &lines);
    eprintln!("{report:?}, {} DDL jobs", workload.ddl_count());
    assert!(report.is_clean(), "{:#?}", &report.violations[..report.violations.len().min(10)]);
    assert!(workload.ddl_count() >= 10, "the run had DDL: {}", workload.ddl_count());
    assert!(report.rows_expected > 300 && report.ddl_expected >= 5, "{report:?}");
    // The subscriptions' metrics are named after their tables (gauges refresh every second).
    let mut wanted: Vec<String> = workload.table_names().iter().map(|n| n.to_string()).collect();
    wanted.push("mysql.tidb_ddl_job".to_owned());
    let named = |text: &str| {
        wanted.iter().all(|name| {
            text.contains(&format!("kvfeed_kvclient_resolved_ts{{name=\"{name}\",subscription="))
        })
    };
    for _ in 0..100 {
        if named(&client.metrics_text()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(named(&client.metrics_text()), "{wanted:?} in {}", client.metrics_text());
    drop(watcher);
    client.shutdown();
    let _ = runner.await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_missing_at_the_start_ts_is_refused() {
    let (cluster, client, runner) = start(&[100]).await;
    let mut workload =
        TidbWorkload::new(TidbConfig { table_ids: vec![100], ..TidbConfig::default() });
    let ts = workload.bootstrap(&cluster).unwrap();
    let error = Watcher::start(&client, &[TableName::new("demo", "nope")], ts).await.unwrap_err();
    assert!(matches!(error, WatchError::Decode(_)), "{error:?}");
    assert!(error.to_string().contains("demo.nope does not exist"), "{error}");
    client.shutdown();
    let _ = runner.await;
    cluster.shutdown().await;
}
