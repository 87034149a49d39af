//! `kvfeed demo`: a simulated cluster, a seeded workload, faults with `--chaos`, a subscriber of
//! every table, live progress on stderr, and the verifier's verdict at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kvfeed::{Client, Config, Event, Subscription, SubscriptionId};
use kvfeed_sim::{Cluster, FaultSchedule, FeedEvent, Report, physical_of, verify};
use kvfeed_span::table::table_span;

use crate::Failure;
use crate::layout;

/// Arguments of `kvfeed demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Stores (TiKV servers).
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Regions over the tables.
    #[arg(long, default_value_t = 64)]
    regions: usize,
    /// Tables, each with its own subscription.
    #[arg(long, default_value_t = 4)]
    tables: usize,
    /// Transactions per second.
    #[arg(long, default_value_t = 300, value_name = "TXN/S")]
    rate: u32,
    /// Seconds of workload.
    #[arg(long, default_value_t = 40, value_name = "S")]
    duration: u64,
    /// Inject faults: splits, merges, leader moves, store restarts, stream resets, busy and
    /// congested stores, abandoned locks.
    #[arg(long)]
    chaos: bool,
    /// Seed of the workload and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// How long the subscribers get to catch up after the workload stops.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Time between resolved-ts lag samples.
const LAG_SAMPLE: Duration = Duration::from_millis(100);
/// Time between faults with `--chaos`.
const FAULT_EVERY: Duration = Duration::from_millis(700);

/// What one table's subscriber saw.
struct Watcher {
    table: i64,
    id: SubscriptionId,
    start_ts: u64,
    rows: AtomicU64,
    resolved: AtomicU64,
    /// Resolved-ts lag (wall clock minus the last published resolved ts), sampled every
    /// `LAG_SAMPLE` while the workload runs, in ms.
    lags: Mutex<Vec<u64>>,
    log: Mutex<Vec<FeedEvent>>,
    failure: Mutex<Option<String>>,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    if args.rate == 0 {
        return Err(Failure::usage("--rate must be at least 1"));
    }
    let tables = layout::tables(args.tables);
    let cluster =
        Cluster::start(layout::cluster_config(args.stores, args.regions, &tables)).await.map_err(
            |error| Failure::runtime(format!("cannot start the simulated cluster: {error}")),
        )?;
    let cluster = Arc::new(cluster);
    let mut config = Config::new([cluster.pd_address()]);
    config.advance_interval = Duration::from_millis(100);
    config.lock_resolve_fence = Some(Duration::from_secs(2));
    config.lock_resolve_cooldown = Duration::from_secs(1);
    let client = Client::connect(config).await.map_err(|error| {
        Failure::runtime(format!("cannot connect to the simulated PD: {error}"))
    })?;
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };

    let start_ts = cluster.now_ts();
    let mut watchers = Vec::new();
    let mut readers = Vec::new();
    for &table in &tables {
        let subscription = client
            .subscribe(table_span(table), start_ts)
            .map_err(|error| Failure::runtime(error.to_string()))?;
        let watcher = Arc::new(Watcher {
            table,
            id: subscription.id(),
            start_ts,
            rows: AtomicU64::new(0),
            resolved: AtomicU64::new(start_ts),
            lags: Mutex::default(),
            log: Mutex::default(),
            failure: Mutex::default(),
        });
        readers.push(tokio::spawn(read(Arc::clone(&watcher), subscription)));
        watchers.push(watcher);
    }

    let progress = Progress::new(&watchers, args.duration);
    let faults = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let chaos = args.chaos.then(|| {
        let (cluster, faults) = (Arc::clone(&cluster), Arc::clone(&faults));
        let keys = layout::workload(args.seed, &tables).key_space();
        tokio::spawn(run_faults(cluster, faults, FaultSchedule::new(args.seed, keys), deadline))
    });
    let mut workload = layout::workload(args.seed, &tables);
    let mut timer = tokio::time::interval(Duration::from_secs(1) / args.rate);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut redraw, mut sampled) = (Instant::now(), Instant::now());
    while Instant::now() < deadline {
        timer.tick().await;
        workload.step(&cluster);
        if sampled.elapsed() >= LAG_SAMPLE {
            sampled = Instant::now();
            sample_lags(&watchers);
        }
        if redraw.elapsed() >= Duration::from_millis(250) {
            redraw = Instant::now();
            progress.update(&client, &watchers, &faults, "running");
        }
    }
    if let Some(chaos) = chaos {
        let _ = chaos.await;
    }
    for store in cluster.store_ids() {
        cluster.set_server_busy(store, 0);
        cluster.set_congested(store, 0);
    }

    // Every subscription must catch up with the end of the workload.
    let final_ts = cluster.now_ts();
    let caught_up = async {
        while watchers.iter().any(|w| w.resolved.load(Ordering::Acquire) < final_ts)
            && watchers.iter().all(|w| w.failure.lock().expect("lock").is_none())
        {
            progress.update(&client, &watchers, &faults, "catching up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stuck = tokio::time::timeout(CATCH_UP, caught_up).await.is_err();
    progress.update(&client, &watchers, &faults, "verifying");
    for watcher in &watchers {
        client.unsubscribe(watcher.id);
    }
    for reader in readers {
        let _ = tokio::time::timeout(CATCH_UP, reader).await;
    }
    progress.finish();
    client.shutdown();
    let _ = runner.await;

    let commits = cluster.committed_rows();
    let reports: Vec<(i64, Report)> = watchers
        .iter()
        .map(|w| {
            let log = w.log.lock().expect("lock");
            (w.table, verify(&commits, &table_span(w.table), w.start_ts, &log))
        })
        .collect();
    let ok = summarize(&args, &watchers, &reports, faults.load(Ordering::Relaxed), stuck);
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.shutdown().await;
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::runtime("the verifier found violations (see the summary)"))
    }
}

/// Records each subscription's current resolved-ts lag behind the wall clock (the simulated
/// TSO follows it).
fn sample_lags(watchers: &[Arc<Watcher>]) {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let now_ms = u64::try_from(now_ms).unwrap_or(0);
    for watcher in watchers {
        let resolved = watcher.resolved.load(Ordering::Acquire);
        let physical = u64::try_from(physical_of(resolved)).unwrap_or(0);
        watcher.lags.lock().expect("lock").push(now_ms.saturating_sub(physical));
    }
}

/// Reads one subscription until it ends, logging events for the verifier.
async fn read(watcher: Arc<Watcher>, mut subscription: Subscription) {
    while let Some(event) = subscription.recv().await {
        match event {
            Ok(Event::Row(row)) => {
                watcher.rows.fetch_add(1, Ordering::Relaxed);
                watcher.log.lock().expect("lock").push(FeedEvent::Row(kvfeed_sim::RowEvent {
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
            Ok(Event::Resolved(ts)) => {
                let now_ms =
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                let lag = u64::try_from(now_ms)
                    .unwrap_or(0)
                    .saturating_sub(physical_of(ts).max(0) as u64);
                watcher.lags.lock().expect("lock").push(lag);
                watcher.resolved.store(ts, Ordering::Release);
                watcher.log.lock().expect("lock").push(FeedEvent::Resolved(ts));
            }
            Err(error) => {
                *watcher.failure.lock().expect("lock") = Some(error.to_string());
            }
        }
    }
    watcher.log.lock().expect("lock").push(FeedEvent::Unsubscribed);
}

/// Applies a fault of the schedule every `FAULT_EVERY` until the deadline; counts the applied.
async fn run_faults(
    cluster: Arc<Cluster>,
    applied: Arc<AtomicU64>,
    mut schedule: FaultSchedule,
    deadline: Instant,
) {
    while Instant::now() + FAULT_EVERY < deadline {
        tokio::time::sleep(FAULT_EVERY).await;
        let fault = schedule.next_fault(&cluster);
        match cluster.apply_fault(&fault).await {
            Ok(()) => {
                applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(?fault, "fault injected");
            }
            Err(error) => tracing::debug!(?fault, %error, "fault not applicable"),
        }
    }
}

/// The live display on stderr (drawn only when stderr is a terminal).
struct Progress {
    multi: MultiProgress,
    header: ProgressBar,
    tables: Vec<ProgressBar>,
    started: Instant,
    duration: u64,
}

impl Progress {
    fn new(watchers: &[Arc<Watcher>], duration: u64) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {msg}").expect("valid template");
        let header = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
        let tables = watchers
            .iter()
            .map(|_| multi.add(ProgressBar::new_spinner().with_style(style.clone())))
            .collect();
        Self { multi, header, tables, started: Instant::now(), duration }
    }

    fn update(&self, client: &Client, watchers: &[Arc<Watcher>], faults: &AtomicU64, phase: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let (mut regions, mut initialized, mut rows) = (0, 0, 0);
        for (bar, watcher) in self.tables.iter().zip(watchers) {
            let stats = client.stats(watcher.id);
            let table_rows = watcher.rows.load(Ordering::Relaxed);
            rows += table_rows;
            let lag = watcher.lags.lock().expect("lock").last().copied().unwrap_or(0);
            if let Some(stats) = stats {
                regions += stats.regions;
                initialized += stats.initialized;
            }
            bar.set_message(format!(
                "table {}: {} rows, resolved-ts lag {} ms",
                watcher.table, table_rows, lag
            ));
            bar.tick();
        }
        let rate = if elapsed > 0.0 { rows as f64 / elapsed } else { 0.0 };
        self.header.set_message(format!(
            "{phase} {:.0}/{} s | regions {initialized}/{regions} initialized | {rows} rows ({rate:.0}/s) | faults {}",
            elapsed,
            self.duration,
            faults.load(Ordering::Relaxed)
        ));
        self.header.tick();
    }

    fn finish(&self) {
        for bar in self.tables.iter().chain([&self.header]) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Prints the summary on stdout; returns whether every invariant held.
fn summarize(
    args: &Args,
    watchers: &[Arc<Watcher>],
    reports: &[(i64, Report)],
    faults: u64,
    stuck: bool,
) -> bool {
    let sum = |f: fn(&Report) -> usize| reports.iter().map(|(_, r)| f(r)).sum::<usize>();
    let violations = sum(|r| {
        r.out_of_span
            + r.resolved_violations
            + r.resolved_regressions
            + r.unexpected
            + r.after_unsubscribe
    });
    let mut lags: Vec<u64> =
        watchers.iter().flat_map(|w| w.lags.lock().expect("lock").clone()).collect();
    lags.sort_unstable();
    let percentile =
        |p: usize| lags.get((lags.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0);
    let failures: Vec<String> = watchers
        .iter()
        .filter_map(|w| {
            w.failure.lock().expect("lock").clone().map(|f| format!("table {}: {f}", w.table))
        })
        .collect();
    let ok = reports.iter().all(|(_, r)| r.ok()) && !stuck && failures.is_empty();
    println!(
        "kvfeed demo: {} stores, {} regions, {} tables, {} txn/s for {} s, chaos {} (seed {})",
        args.stores,
        args.regions,
        args.tables,
        args.rate,
        args.duration,
        if args.chaos { "on" } else { "off" },
        args.seed
    );
    println!("  rows written       {}", sum(|r| r.expected));
    println!("  rows delivered     {}", sum(|r| r.delivered));
    println!("  duplicates         {}", sum(|r| r.duplicated));
    println!("  missing            {}", sum(|r| r.missing));
    println!("  violations         {violations}");
    println!("  resolved-ts lag    p50 {} ms, p99 {} ms", percentile(50), percentile(99));
    println!("  faults injected    {faults}");
    if stuck {
        println!("  caught up          NO: a resolved ts did not reach the end of the workload");
    }
    for failure in &failures {
        println!("  failed             {failure}");
    }
    for (table, report) in reports.iter().filter(|(_, r)| !r.ok()) {
        println!("  table {table}: {report:?}");
    }
    println!("  verdict            {}", if ok { "OK" } else { "FAILED" });
    ok
}
