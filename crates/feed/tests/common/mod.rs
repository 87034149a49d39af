//! Shared harness of the client's integration tests: a simulated cluster on loopback, a running
//! client, and subscribers that log what they receive for the sim's verifier.
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

use std::time::Duration;

use kvfeed::{Client, Config, Event, Subscription};
use kvfeed_sim::{Cluster, ClusterConfig, FeedEvent, Report, Workload, WorkloadConfig, verify};
use kvfeed_span::Span;
use kvfeed_span::table::record_key;
use tokio::task::JoinHandle;

/// A safety net for waits: far above what any test needs, never a synchronisation device.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The sim's resolved-ts interval in these tests.
pub const TICK: Duration = Duration::from_millis(50);

pub struct Harness {
    pub cluster: Cluster,
    pub client: Client,
    runner: JoinHandle<Result<(), kvfeed::Error>>,
}

/// A cluster of `stores` stores with regions split at the handles `splits` of table 100, and a
/// running client.
pub async fn start(stores: usize, splits: &[i64]) -> Harness {
    start_with(
        ClusterConfig {
            stores,
            split_keys: splits.iter().map(|&h| record_key(100, h)).collect(),
            resolved_ts_interval: Some(TICK),
            ..ClusterConfig::default()
        },
        |_| {},
    )
    .await
}

pub async fn start_with(cluster: ClusterConfig, tweak: impl FnOnce(&mut Config)) -> Harness {
    let cluster = Cluster::start(cluster).await.expect("start the simulated cluster");
    let mut config = test_config(&cluster);
    tweak(&mut config);
    let client = Client::connect(config).await.expect("connect to the simulated PD");
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    Harness { cluster, client, runner }
}

pub fn test_config(cluster: &Cluster) -> Config {
    let mut config = Config::new([cluster.pd_address()]);
    config.advance_interval = Duration::from_millis(20);
    config.worker_count = 4;
    config.region_backoff =
        kvfeed::Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
    config
}

impl Harness {
    pub async fn stop(self) {
        self.stop_client().await.shutdown().await;
    }

    /// Stops the client (checking its internal error counter) and hands the cluster back.
    pub async fn stop_client(self) -> Cluster {
        let text = self.client.metrics_text();
        let broken = text
            .lines()
            .find_map(|l| l.strip_prefix("kvfeed_kvclient_internal_error_count "))
            .expect("the internal error counter is exported");
        assert_eq!(broken.trim(), "0", "internal invariants broke; see the error logs");
        self.client.shutdown();
        let result = tokio::time::timeout(DEADLINE, self.runner).await.expect("run ends");
        result.expect("run task").expect("run returns Ok");
        self.cluster
    }

    /// Checks a log against the cluster's commits.
    pub fn verify(&self, span: &Span, start_ts: u64, log: &Log) -> Report {
        let report = verify(&self.cluster.committed_rows(), span, start_ts, &log.events);
        assert!(report.ok(), "verifier findings: {report:#?}");
        report
    }
}

/// The client's `event_feed_error_count` of one error type (0 if never counted).
pub fn error_count(client: &Client, kind: &str) -> u64 {
    let needle = format!("kvfeed_kvclient_event_feed_error_count{{type=\"{kind}\"}} ");
    client
        .metrics_text()
        .lines()
        .find_map(|line| line.strip_prefix(&needle).map(|n| n.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// A workload over table 100's handles `0..keys`.
pub fn workload(seed: u64, keys: i64) -> Workload {
    Workload::new(WorkloadConfig {
        seed,
        tables: vec![100],
        keys_per_table: keys,
        ..WorkloadConfig::default()
    })
}

/// What a subscriber received, in order.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<FeedEvent>,
    pub resolved: u64,
    pub rows: usize,
}

impl Log {
    pub fn push(&mut self, event: Event) {
        match event {
            Event::Row(row) => {
                self.rows += 1;
                self.events.push(FeedEvent::Row(kvfeed_sim::RowEvent {
                    key: row.key,
                    op: match row.op {
                        kvfeed::Op::Put => kvfeed_sim::Op::Put,
                        kvfeed::Op::Delete => kvfeed_sim::Op::Delete,
                    },
                    value: row.value,
                    old_value: row.old_value,
                    start_ts: row.start_ts,
                    commit_ts: row.commit_ts,
                }));
            }
            Event::Resolved(ts) => {
                assert!(ts > self.resolved, "resolved ts {ts} after {}", self.resolved);
                self.resolved = ts;
                self.events.push(FeedEvent::Resolved(ts));
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Reads until the resolved ts reaches `ts`.
    pub async fn until_resolved(&mut self, sub: &mut Subscription, ts: u64) {
        let wait = async {
            while self.resolved < ts {
                match sub.recv().await {
                    Some(Ok(event)) => self.push(event),
                    Some(Err(error)) => panic!("subscription failed: {error}"),
                    None => panic!("subscription ended before resolving {ts}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("resolved ts stuck at {} below {ts}", self.resolved));
    }

    /// Reads until the stream ends; returns the error it ended with, if any.
    pub async fn until_end(&mut self, sub: &mut Subscription) -> Option<kvfeed::Error> {
        let wait = async {
            loop {
                match sub.recv().await {
                    Some(Ok(event)) => self.push(event),
                    Some(Err(error)) => {
                        assert!(sub.recv().await.is_none(), "the stream ends after its error");
                        return Some(error);
                    }
                    None => return None,
                }
            }
        };
        let end = tokio::time::timeout(DEADLINE, wait).await.expect("stream ends");
        self.events.push(FeedEvent::Unsubscribed);
        end
    }
}

/// Polls `value` (at `TICK`, bounded by `DEADLINE`) until it gives something.
pub async fn eventually_ok<T>(what: &str, mut value: impl FnMut() -> Option<T>) -> T {
    let wait = async {
        loop {
            if let Some(value) = value() {
                return value;
            }
            tokio::time::sleep(TICK).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits (polling at `TICK`, bounded by `DEADLINE`) until `condition` holds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(TICK).await;
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.unwrap_or_else(|_| panic!("timed out: {what}"));
}
