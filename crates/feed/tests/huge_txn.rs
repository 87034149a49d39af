//! A transaction far larger than the memory quota passes through a client in a process of its
//! own, with its resident memory measured: the values of its prewrites spill to disk and come
//! back at COMMIT, every row is delivered once with its own value, and the client's peak RSS
//! stays within the quota plus a stated overhead above what it held before the transaction.
//!
//! The simulated cluster runs in this test's process; the client is this same test binary,
//! started again to run [`huge_txn_client_process`] only (ignored in a normal run), so that its
//! RSS is the client's alone. `KVFEED_HUGE_TXN_MIB` sets the transaction's size (default 512
//! MiB; `cargo xtask bench spill` runs 2 GiB and prints the figures).

#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use kvfeed::{Client, Config, Event};
use kvfeed_sim::{Cluster, ClusterConfig, Mutation};
use kvfeed_span::table::{record_key, table_span};

/// The client's memory quota.
const QUOTA_MIB: u64 = 128;
/// What the client may hold above its quota and the memory it had before the transaction: the
/// gRPC connection's buffers (8 MiB window, a frame being decoded), the keys and bookkeeping of
/// the pending prewrites, allocator slack.
const OVERHEAD_MIB: u64 = 64;
/// Each row's value.
const VALUE_BYTES: usize = 64 << 10;
/// Rows per prewrite call of the simulated transaction.
const ROWS_PER_PART: usize = 64;
const TABLE: i64 = 100;

/// Set (to PD's address) in the client process.
const PD_ENV: &str = "KVFEED_HUGE_TXN_PD";
const START_TS_ENV: &str = "KVFEED_HUGE_TXN_START_TS";
const ROWS_ENV: &str = "KVFEED_HUGE_TXN_ROWS";

/// Row `handle`'s value: a pattern that differs from row to row and byte to byte.
fn value_of(handle: u64) -> Vec<u8> {
    (0..VALUE_BYTES).map(|i| (handle.wrapping_mul(131) as usize + i * 7) as u8).collect()
}

fn handle_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("a record key ends in its handle");
    u64::from_be_bytes(tail) ^ (1 << 63)
}

/// A `Key: value kB` line of `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the key is in /proc/self/status")
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
}

/// The figures the client process reports on its last line.
#[derive(Debug)]
struct Report {
    rows: u64,
    value_bytes: u64,
    ready_rss_kib: u64,
    peak_rss_kib: u64,
    peak_spilled: u64,
    peak_buffered: u64,
    /// PREWRITE rows received: one per row, unless a region was read twice.
    prewrites: u64,
    region_errors: u64,
}

fn parse_report(line: &str) -> Report {
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line:?}"))
    };
    Report {
        rows: field("rows"),
        value_bytes: field("value_bytes"),
        ready_rss_kib: field("ready_rss_kib"),
        peak_rss_kib: field("peak_rss_kib"),
        peak_spilled: field("peak_spilled"),
        peak_buffered: field("peak_buffered"),
        prewrites: field("prewrites"),
        region_errors: field("region_errors"),
    }
}

#[test]
fn a_transaction_larger_than_the_quota_spills_and_passes_through_it_once() {
    let mib: u64 =
        std::env::var("KVFEED_HUGE_TXN_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let rows = (mib << 20) / VALUE_BYTES as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = runtime.block_on(async {
        Cluster::start(ClusterConfig {
            stores: 1,
            resolved_ts_interval: Some(Duration::from_millis(50)),
            ..ClusterConfig::default()
        })
        .await
        .expect("start the simulated cluster")
    });
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "huge_txn_client_process", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(PD_ENV, cluster.pd_address())
        .env(START_TS_ENV, cluster.now_ts().to_string())
        .env(ROWS_ENV, rows.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client process");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut next_report_line = |prefix: &str| -> String {
        loop {
            let line = lines.next().expect("the client process reports").expect("utf-8");
            // The harness starts the line with the test's name.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].to_owned();
            }
        }
    };
    next_report_line("huge-txn ready");
    // One transaction: prewritten a part at a time (its locks all held), then committed.
    let mutations: Vec<Mutation> =
        (0..rows).map(|h| Mutation::put(record_key(TABLE, h as i64), value_of(h))).collect();
    let start_ts = cluster.begin();
    let indices: Vec<usize> = (0..mutations.len()).collect();
    for part in indices.chunks(ROWS_PER_PART) {
        cluster.prewrite_part(start_ts, &mutations, part, 600_000, false).expect("prewrite");
    }
    cluster.commit(start_ts).expect("commit");
    drop(mutations);
    let report = parse_report(&next_report_line("huge-txn done"));
    let status = child.wait().expect("the client process ends");
    assert!(status.success(), "the client process failed: {status}");
    println!("{report:?}");
    assert_eq!(report.rows, rows, "every row once");
    assert_eq!((report.prewrites, report.region_errors), (rows, 0), "one registration: {report:?}");
    assert_eq!(report.value_bytes, rows * VALUE_BYTES as u64);
    assert!(report.peak_spilled > 0, "values went to disk");
    assert!(report.peak_buffered <= (QUOTA_MIB + OVERHEAD_MIB) << 20, "{report:?}");
    let grown_kib = report.peak_rss_kib.saturating_sub(report.ready_rss_kib);
    assert!(
        grown_kib <= (QUOTA_MIB + OVERHEAD_MIB) << 10,
        "RSS grew by {} MiB through a {mib} MiB transaction: {report:?}",
        grown_kib >> 10
    );
    runtime.block_on(cluster.shutdown());
}

/// The client half of the test above, run by it in a process of its own: subscribes, says
/// "ready" once the subscription's first resolved ts arrives, checks every row of the
/// transaction (once each, each with its own value) and reports its figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the client process of a_transaction_larger_than_the_quota_spills_and_passes_through_it_once"]
async fn huge_txn_client_process() {
    let mut config =
        Config::new([std::env::var(PD_ENV).expect("run by the huge-transaction test")]);
    config.memory_quota = (QUOTA_MIB << 20) as usize;
    // On disk: the system's temporary directory may be a memory file system.
    config.spill_dir = Some(env!("CARGO_TARGET_TMPDIR").into());
    config.advance_interval = Duration::from_millis(20);
    let expected = env_u64(ROWS_ENV);
    let client = Client::connect(config).await.expect("connect");
    let runner = tokio::spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    let mut sub =
        client.subscribe(table_span(TABLE), env_u64(START_TS_ENV)).await.expect("subscribe");
    // The spilled bytes are sampled on their own: while the prewrites arrive, no event does.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn({
        let client = client.clone();
        async move {
            let mut peak = 0;
            let mut every = tokio::time::interval(Duration::from_millis(5));
            loop {
                peak = peak.max(client.spilled_bytes());
                tokio::select! {
                    _ = every.tick() => {}
                    _ = &mut stopped => return peak,
                }
            }
        }
    });
    let mut seen = HashSet::new();
    let (mut value_bytes, mut peak_buffered) = (0u64, 0usize);
    let mut ready_rss_kib = None;
    while (seen.len() as u64) < expected {
        let event = tokio::time::timeout(Duration::from_secs(120), sub.recv())
            .await
            .expect("events keep coming")
            .expect("the subscription goes on")
            .expect("no error");
        peak_buffered = peak_buffered.max(client.buffered_bytes());
        match event {
            Event::Resolved(_) if ready_rss_kib.is_none() => {
                ready_rss_kib = Some(status_kib("VmRSS:"));
                println!("huge-txn ready");
            }
            Event::Row(row) => {
                let handle = handle_of(&row.key);
                assert!(seen.insert(handle), "row {handle} delivered twice");
                assert!(row.value == value_of(handle), "row {handle} has another row's value");
                value_bytes += row.value.len() as u64;
            }
            _ => {}
        }
    }
    let text = client.metrics_text();
    let metric = |prefix: &str| -> u64 {
        text.lines()
            .filter_map(|line| {
                line.strip_prefix(prefix)?.split_whitespace().last()?.parse::<u64>().ok()
            })
            .sum()
    };
    let prewrites = metric("kvfeed_kvclient_pull_event_count{type=\"PREWRITE\"}");
    let region_errors = metric("kvfeed_kvclient_event_feed_error_count");
    drop(stop);
    let peak_spilled = sampler.await.expect("sampler");
    client.shutdown();
    println!(
        "huge-txn done prewrites={prewrites} region_errors={region_errors} rows={} value_bytes={value_bytes} ready_rss_kib={} peak_rss_kib={} \
         peak_spilled={peak_spilled} peak_buffered={peak_buffered}",
        seen.len(),
        ready_rss_kib.expect("ready before the rows"),
        status_kib("VmHWM:"),
    );
    runner.await.expect("run task").expect("run returns Ok");
}
