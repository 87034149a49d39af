//! Seeded chaos runs of the kvfeed client against the simulated cluster (design §4: the
//! invariants hold under any schedule of faults).
//!
//! [`run_seed`] builds a cluster and a client from the seed, subscribes several spans (two
//! tables, a span overlapping one of them, one subscription that is unsubscribed and
//! subscribed again mid-run, one started mid-run with a snapshot: the snapshot must be the
//! table at its ts, and the changes after it complete; and one of a second client that is shut
//! down mid-run and replaced by a new client subscribing from its checkpoint: nothing lost,
//! nothing twice), plus two TiDB tables written by the sim's TiDB workload (rows of every column
//! type, DDL jobs) and watched decoded by name, and runs the seeded workloads while a seeded
//! schedule injects faults:
//! splits, merges, leader transfers, store restarts, stream resets, busy and congested stores,
//! slow stores, long-held and abandoned locks. Then the faults stop, every subscription must reach
//! the final resolved ts, and the verifiers check each log: every row delivered, and only once;
//! every decoded event as written, column by column, in commit-ts order with the DDL.
//! The schedule of faults is a function of the seed (their timing is not: the machine's speed
//! decides what they hit), so a failing seed is rerun with the same faults in the same order.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvfeed::{Client, Config};
use kvfeed_cli::{DecodedWatcher, Watcher};
use kvfeed_sim::{
    Cluster, ClusterConfig, Fault, FaultSchedule, Mutation, SplitMix64, TidbConfig, TidbWorkload,
    Workload, WorkloadConfig,
};
use kvfeed_span::table::{record_key, record_prefix, table_span};
use kvfeed_span::{EncodedKey, Span};
use kvfeed_tidb_watch::{TableName, Watcher as TidbWatcher};

/// One chaos run's shape.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Decides the cluster, the workload and the fault schedule.
    pub seed: u64,
    /// How long the workload and the faults run.
    pub duration: Duration,
    /// Transactions per second.
    pub rate: u32,
    /// Mean time between faults.
    pub fault_every: Duration,
    /// How long the subscriptions get to reach the final resolved ts once faults stop.
    pub catch_up: Duration,
}

impl ChaosConfig {
    /// A run of `duration` for `seed`, 200 transactions and about 3 faults a second.
    pub fn new(seed: u64, duration: Duration) -> Self {
        Self {
            seed,
            duration,
            rate: 200,
            fault_every: Duration::from_millis(300),
            catch_up: Duration::from_secs(60),
        }
    }
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Faults applied, in order.
    pub faults: Vec<Fault>,
    /// Rows the subscriptions should have received, over all of them.
    pub expected: usize,
    /// Rows delivered, duplicates included.
    pub delivered: usize,
    /// Decoded row events of the TiDB tables (checked column by column).
    pub decoded_rows: usize,
    /// DDL events of the TiDB tables.
    pub ddl_events: usize,
    /// The first violation, if any: which subscription and what.
    pub violation: Option<String>,
    /// How far (ms of TSO time) the cluster's GC safe point ended behind the final ts: GC ran
    /// behind the client, held back by its service safe point.
    pub gc_behind_ms: u64,
}

const TABLES: [i64; 2] = [100, 101];
/// The TiDB workload's tables (`demo.t0`, `demo.t1`), watched decoded.
const TIDB_TABLES: [i64; 2] = [102, 103];
const KEYS_PER_TABLE: i64 = 400;

/// A client with `config`, running.
async fn start_client(
    config: Config,
) -> std::io::Result<(Client, tokio::task::JoinHandle<Result<(), kvfeed::Error>>)> {
    let client =
        Client::connect(config).await.map_err(|error| std::io::Error::other(error.to_string()))?;
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    Ok((client, runner))
}

/// Runs one seed. Needs a multi-threaded tokio runtime.
pub async fn run_seed(config: &ChaosConfig) -> std::io::Result<Outcome> {
    let mut rng = SplitMix64::new(config.seed);
    let stores = 3 + rng.below(3) as usize;
    let regions_per_table = 4 + rng.below(12) as i64;
    let mut split_keys = Vec::new();
    for table in TABLES.into_iter().chain(TIDB_TABLES) {
        split_keys.push(record_prefix(table));
        split_keys.extend(
            (1..regions_per_table)
                .map(|k| record_key(table, k * KEYS_PER_TABLE / regions_per_table)),
        );
    }
    let cluster = Arc::new(
        Cluster::start(ClusterConfig {
            stores,
            replicas: 3,
            split_keys,
            resolved_ts_interval: Some(Duration::from_millis(100)),
            v1_only_stores: if rng.chance(30) { vec![1] } else { Vec::new() },
            // GC runs with a short life time: only the client's service safe point keeps the
            // history its regions are read again from.
            gc_life_time: Some(Duration::from_secs(2)),
            gc_interval: Duration::from_millis(500),
            ..ClusterConfig::default()
        })
        .await?,
    );
    let mut client_config = Config::new([cluster.pd_address()]);
    client_config.advance_interval = Duration::from_millis(50);
    client_config.worker_count = 4;
    client_config.region_backoff =
        kvfeed::Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
    client_config.lock_resolve_fence = Some(Duration::from_secs(1));
    client_config.lock_resolve_cooldown = Duration::from_millis(500);
    client_config.gc_refresh = Duration::from_millis(200);
    // Wedged stores are in the schedule: registrations they swallowed are given up on soon.
    client_config.region_stuck_timeout = Some(Duration::from_secs(1));
    let (client, runner) = start_client(client_config.clone()).await?;
    // A second client, killed mid-run and replaced by a new one from its checkpoint.
    let (mut restarted_client, mut restarted_runner) = start_client(client_config.clone()).await?;

    // The TiDB tables: their schema first, then a decoded watch of them from there.
    let mut tidb = TidbWorkload::new(TidbConfig {
        seed: config.seed,
        table_ids: TIDB_TABLES.to_vec(),
        keys_per_table: KEYS_PER_TABLE,
        ddl_every: 60,
        ..TidbConfig::default()
    });
    tidb.bootstrap(&cluster).map_err(|error| std::io::Error::other(error.to_string()))?;
    let start_ts = cluster.now_ts();
    let tidb_names = tidb.table_names();
    let parsed: Vec<TableName> = tidb_names
        .iter()
        .map(|name| TableName::parse(name))
        .collect::<Result<_, _>>()
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let tidb_watcher = TidbWatcher::start(&client, &parsed, start_ts)
        .await
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let (decoded, decoded_reader) = DecodedWatcher::spawn(tidb_watcher, tidb_names, start_ts);
    let overlap = Span::new(
        EncodedKey::encode(&record_key(100, KEYS_PER_TABLE / 4)),
        EncodedKey::encode(&record_key(100, KEYS_PER_TABLE * 3 / 4)),
    )
    .expect("a quarter is below three quarters");
    let spans =
        [("table 100", table_span(100)), ("table 101", table_span(101)), ("overlap", overlap)];
    let mut watchers = Vec::new();
    let mut readers = Vec::new();
    for (name, span) in spans {
        let subscription = client.subscribe(span.clone(), start_ts).await.map_err(io_error)?;
        let (watcher, reader) = Watcher::spawn(name, subscription, span, start_ts);
        watchers.push((watcher, true));
        readers.push(reader);
    }
    let subscription =
        restarted_client.subscribe(table_span(100), start_ts).await.map_err(io_error)?;
    let (mut restarted, mut restarted_reader) =
        Watcher::spawn("restarted client (1st)", subscription, table_span(100), start_ts);
    // The subscription that comes and goes.
    let subscription = client.subscribe(table_span(101), start_ts).await.map_err(io_error)?;
    let (mut churned, mut churned_reader) =
        Watcher::spawn("churned (1st)", subscription, table_span(101), start_ts);

    let mut outcome = Outcome { seed: config.seed, ..Outcome::default() };
    let mut workload = Workload::new(WorkloadConfig {
        seed: config.seed,
        tables: TABLES.to_vec(),
        keys_per_table: KEYS_PER_TABLE,
        ..WorkloadConfig::default()
    });
    let keys = workload.key_space();
    let mut schedule = FaultSchedule::new(config.seed, keys.clone());
    let started = Instant::now();
    let mut next_fault = started + jittered(&mut rng, config.fault_every);
    let churn_at = started + config.duration / 2;
    let mut churn_done = false;
    let mut snapshotted: Option<Arc<Watcher>> = None;
    let mut held: Vec<(u64, Instant)> = Vec::new();
    let mut slowed: Option<(u64, Instant)> = None;
    let mut timer = tokio::time::interval(Duration::from_secs(1) / config.rate.max(1));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    while started.elapsed() < config.duration {
        timer.tick().await;
        workload.step(&cluster);
        // The TiDB workload at half the rate (its locks and DDL jobs in the same faults).
        tick += 1;
        if tick.is_multiple_of(2) {
            tidb.step(&cluster);
        }
        let now = Instant::now();
        held.retain(|&(start_ts, until)| {
            let due = now >= until;
            if due {
                let _ = cluster.commit(start_ts);
            }
            !due
        });
        if slowed.is_some_and(|(_, until)| now >= until) {
            let (store, _) = slowed.take().expect("checked");
            cluster.set_store_slow(store, Duration::ZERO);
        }
        if !churn_done && now >= churn_at {
            churn_done = true;
            client.unsubscribe(churned.id);
            let _ = tokio::time::timeout(config.catch_up, churned_reader).await;
            watchers.push((churned, false));
            let restart_ts = cluster.now_ts();
            let subscription =
                client.subscribe(table_span(101), restart_ts).await.map_err(io_error)?;
            (churned, churned_reader) =
                Watcher::spawn("churned (2nd)", subscription, table_span(101), restart_ts);
            // The second client dies; a new one goes on from the checkpoint of its subscription
            // (the last resolved ts it gave out).
            // (Unsubscribed first: a stream ended by a shutdown reports an error.)
            restarted_client.unsubscribe(restarted.id);
            let _ = tokio::time::timeout(config.catch_up, restarted_reader).await;
            restarted_client.shutdown();
            let _ = restarted_runner.await;
            let checkpoint = restarted.resolved();
            watchers.push((restarted, false));
            (restarted_client, restarted_runner) = start_client(client_config.clone()).await?;
            let subscription =
                restarted_client.subscribe(table_span(100), checkpoint).await.map_err(io_error)?;
            (restarted, restarted_reader) =
                Watcher::spawn("restarted client (2nd)", subscription, table_span(100), checkpoint);
            let subscription = client
                .subscribe_with_snapshot(table_span(100), restart_ts)
                .await
                .map_err(io_error)?;
            let (watcher, reader) =
                Watcher::spawn("snapshot + changes", subscription, table_span(100), restart_ts);
            snapshotted = Some(Arc::clone(&watcher));
            watchers.push((watcher, true));
            readers.push(reader);
        }
        if now >= next_fault {
            next_fault = now + jittered(&mut rng, config.fault_every);
            // One fault in four is one the schedule does not draw: a slow store for a while, or
            // a lock held for a while and then committed.
            let fault = match rng.below(8) {
                0 if slowed.is_none() => {
                    let store = 1 + rng.below(stores as u64);
                    let delay = Duration::from_millis(5 + rng.below(40));
                    cluster.set_store_slow(store, delay);
                    slowed = Some((store, now + Duration::from_millis(300 + rng.below(1500))));
                    None
                }
                1 => {
                    let key = keys[rng.below(keys.len() as u64) as usize].clone();
                    if let Ok(start_ts) = cluster.prewrite(&[Mutation::put(key, "held")], 30_000) {
                        held.push((start_ts, now + Duration::from_millis(200 + rng.below(2000))));
                    }
                    None
                }
                _ => Some(schedule.next_fault(&cluster)),
            };
            if let Some(fault) = fault
                && cluster.apply_fault(&fault).await.is_ok()
            {
                outcome.faults.push(fault);
            }
        }
    }
    watchers.push((churned, true));
    readers.push(churned_reader);
    let restarted_id = restarted.id;
    watchers.push((restarted, churn_done));
    readers.push(restarted_reader);

    // Faults stop; every subscription must catch up with the end of the workload.
    for (start_ts, _) in held {
        let _ = cluster.commit(start_ts);
    }
    for store in cluster.store_ids() {
        cluster.set_server_busy(store, 0);
        cluster.set_congested(store, 0);
        cluster.set_store_slow(store, Duration::ZERO);
    }
    let final_ts = cluster.now_ts();
    let live: Vec<&Arc<Watcher>> =
        watchers.iter().filter(|(_, complete)| *complete).map(|(w, _)| w).collect();
    let caught_up = async {
        while live.iter().any(|w| w.resolved() < final_ts && w.failure().is_none())
            || (decoded.resolved() < final_ts && decoded.failure().is_none())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let stuck = tokio::time::timeout(config.catch_up, caught_up).await.is_err();
    // What the subscriptions that did not catch up look like (regions, initialized, ts).
    let stuck_stats: Vec<String> = live
        .iter()
        .filter(|w| w.resolved() < final_ts && w.failure().is_none())
        .map(|w| format!("{}: {:?}", w.name, client.stats(w.id)))
        .collect();
    for (watcher, _) in &watchers {
        if !watcher.name.starts_with("restarted") {
            client.unsubscribe(watcher.id);
        }
    }
    restarted_client.unsubscribe(restarted_id);
    for reader in readers {
        let _ = tokio::time::timeout(config.catch_up, reader).await;
    }
    decoded_reader.abort();
    let _ = decoded_reader.await;
    client.shutdown();
    restarted_client.shutdown();
    let run_result = runner.await;
    let _ = restarted_runner.await;

    let commits = cluster.committed_rows();
    for (watcher, complete) in &watchers {
        let report = watcher.report(&commits, *complete);
        outcome.expected += report.expected;
        outcome.delivered += report.delivered;
        if outcome.violation.is_some() {
            continue;
        }
        if let Some(failure) = watcher.failure() {
            outcome.violation = Some(format!("{}: failed: {failure}", watcher.name));
        } else if let Some(violation) = report.first_violation() {
            let stuck = if stuck_stats.is_empty() {
                String::new()
            } else {
                format!(" (did not catch up: {})", stuck_stats.join("; "))
            };
            outcome.violation = Some(format!("{}: {violation}{stuck}", watcher.name));
        } else if report.duplicated > 0 {
            // The client delivers exactly once by default.
            outcome.violation = Some(format!(
                "{}: {} rows delivered twice, the first {:?}",
                watcher.name, report.duplicated, report.first_duplicated
            ));
        } else if *complete && watcher.resolved() < final_ts {
            outcome.violation = Some(format!(
                "{}: resolved ts stuck at {} below the final {final_ts}",
                watcher.name,
                watcher.resolved()
            ));
        }
    }
    if outcome.violation.is_none()
        && let Some(watcher) = &snapshotted
    {
        match watcher.snapshot_report(&commits) {
            None => outcome.violation = Some(format!("{}: no SnapshotDone", watcher.name)),
            Some(report) if !report.ok() => {
                outcome.violation = Some(format!("{}: snapshot {report:?}", watcher.name));
            }
            Some(_) => {}
        }
    }
    let tidb_report = decoded.report(tidb.expected());
    outcome.decoded_rows = tidb_report.rows_delivered;
    outcome.ddl_events = tidb_report.ddl_delivered;
    if outcome.violation.is_none() {
        if let Some(failure) = decoded.failure() {
            outcome.violation = Some(format!("TiDB tables: failed: {failure}"));
        } else if let Some(violation) = tidb_report.violations.first() {
            outcome.violation = Some(format!(
                "TiDB tables ({} violations): {violation}",
                tidb_report.violations.len()
            ));
        } else if decoded.resolved() < final_ts {
            outcome.violation = Some(format!(
                "TiDB tables: resolved ts stuck at {} below the final {final_ts}",
                decoded.resolved()
            ));
        }
    }
    if outcome.violation.is_none() && stuck {
        outcome.violation = Some("a subscription did not catch up".to_owned());
    }
    if outcome.violation.is_none() {
        match run_result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => outcome.violation = Some(format!("client: {error}")),
            Err(error) => outcome.violation = Some(format!("client task: {error}")),
        }
    }
    let gc_behind =
        kvfeed_sim::physical_of(final_ts) - kvfeed_sim::physical_of(cluster.gc_safe_point());
    outcome.gc_behind_ms = u64::try_from(gc_behind).unwrap_or(0);
    if outcome.violation.is_none() {
        let below: u64 = cluster
            .store_ids()
            .iter()
            .map(|&store| cluster.cdc_stats(store).registers_below_safe_point)
            .sum();
        if below > 0 {
            outcome.violation =
                Some(format!("{below} registrations were served below the GC safe point"));
        }
    }
    if outcome.violation.is_none() {
        let broken = client.metrics_text().lines().find_map(|l| {
            l.strip_prefix("kvfeed_kvclient_internal_error_count ").map(str::to_owned)
        });
        if broken.as_deref().map(str::trim) != Some("0") {
            outcome.violation = Some(format!("internal invariants broke: {broken:?}"));
        }
    }
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.shutdown().await;
    }
    Ok(outcome)
}

/// A delay in `[mean / 2, 3 * mean / 2)`.
fn jittered(rng: &mut SplitMix64, mean: Duration) -> Duration {
    let ms = u64::try_from(mean.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(ms / 2 + rng.below(ms))
}

fn io_error(error: kvfeed::Error) -> std::io::Error {
    std::io::Error::other(error.to_string())
}
