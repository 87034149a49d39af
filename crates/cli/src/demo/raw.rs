//! The raw-key demo (`kvfeed demo --raw`): the seeded raw workload over the tables, one
//! subscription per table read by a [`Watcher`], and the verifier of every KV row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kvfeed::Client;
use kvfeed_cli::Watcher;
use kvfeed_sim::{Cluster, Report, Workload};
use kvfeed_span::table::{table_id_of, table_span};
use tokio::task::JoinHandle;

use super::drive::{drive, fingerprint};
use super::settings::{Args, CATCH_UP, LAG_SAMPLE, PlainProgress, Summary, plural, summary_header};
use crate::Failure;
use crate::faults;
use crate::layout;

/// Runs the raw demo on `cluster` and prints its summary; returns whether the verifier passed.
pub(super) async fn run(
    args: &Args,
    cluster: Arc<Cluster>,
    client: Client,
    runner: JoinHandle<Result<(), kvfeed::Error>>,
) -> Result<bool, Failure> {
    let tables = layout::tables(args.tables);

    let start_ts = cluster.now_ts();
    let mut watchers = Vec::new();
    let mut readers = Vec::new();
    for &table in &tables {
        let subscription = client
            .subscribe(table_span(table), start_ts)
            .await
            .map_err(|error| Failure::runtime(error.to_string()))?;
        let name = format!("table {table}");
        let (watcher, reader) = Watcher::spawn(name, subscription, table_span(table), start_ts);
        readers.push(reader);
        watchers.push(watcher);
    }

    let progress = Progress::new(&watchers, args.duration);
    let faults = AtomicU64::new(0);
    let schedule = args.chaos.then(|| faults::schedule(args.seed, &tables, false));
    let mut workload = layout::workload(args.seed, &tables, layout::VALUE_LEN);
    let (mut redraw, mut sampled) = (Instant::now(), Instant::now());
    let each_tick = |_: &_| {
        if sampled.elapsed() >= LAG_SAMPLE {
            sampled = Instant::now();
            for watcher in &watchers {
                watcher.sample_lag();
            }
        }
        if redraw.elapsed() >= Duration::from_millis(250) {
            redraw = Instant::now();
            progress.update(&client, &watchers, &faults, "running");
        }
    };
    let step = |workload: &mut Workload, cluster: &Cluster| workload.step(cluster);
    let driven = drive(args, &cluster, &mut workload, step, schedule, &faults, each_tick).await;

    // Every subscription must catch up with the end of the workload.
    let final_ts = cluster.now_ts();
    let caught_up = async {
        while watchers.iter().any(|w| w.resolved() < final_ts)
            && watchers.iter().all(|w| w.failure().is_none())
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
    let reports: Vec<Report> = watchers.iter().map(|w| w.report(&commits, true)).collect();
    let fingerprint =
        fingerprint(&commits, |key| table_id_of(key).is_some_and(|table| tables.contains(&table)));
    let summary = Summary { faults: faults.load(Ordering::Relaxed), stuck, driven, fingerprint };
    let ok = summarize(args, &watchers, &reports, &summary);
    Ok(ok)
}

/// The live display on stderr (drawn only when stderr is a terminal).
struct Progress {
    multi: MultiProgress,
    header: ProgressBar,
    tables: Vec<ProgressBar>,
    started: Instant,
    duration: u64,
    plain: PlainProgress,
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
        Self {
            multi,
            header,
            tables,
            started: Instant::now(),
            duration,
            plain: PlainProgress::new(),
        }
    }

    fn update(&self, client: &Client, watchers: &[Arc<Watcher>], faults: &AtomicU64, phase: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let (mut regions, mut initialized, mut rows) = (0, 0, 0);
        for (bar, watcher) in self.tables.iter().zip(watchers) {
            let stats = client.stats(watcher.id);
            let table_rows = watcher.rows();
            rows += table_rows;
            let lag = watcher.lags().last().copied().unwrap_or(0);
            if let Some(stats) = stats {
                regions += stats.regions;
                initialized += stats.initialized;
            }
            bar.set_message(format!(
                "{}: {table_rows} rows, resolved-ts lag {lag} ms",
                watcher.name
            ));
            bar.tick();
        }
        let rate = if elapsed > 0.0 { rows as f64 / elapsed } else { 0.0 };
        let line = format!(
            "{phase} {:.0}/{} s | regions {initialized}/{regions} initialized | {rows} rows ({rate:.0}/s) | faults {}",
            elapsed,
            self.duration,
            faults.load(Ordering::Relaxed)
        );
        self.plain.offer(&line);
        self.header.set_message(line);
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
fn summarize(args: &Args, watchers: &[Arc<Watcher>], reports: &[Report], run: &Summary) -> bool {
    let sum = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    let violations = sum(|r| {
        r.out_of_span
            + r.resolved_violations
            + r.resolved_regressions
            + r.unexpected
            + r.after_unsubscribe
    });
    let mut lags: Vec<u64> = watchers.iter().flat_map(|w| w.lags()).collect();
    lags.sort_unstable();
    let percentile =
        |p: usize| lags.get(lags.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
    let failures: Vec<String> =
        watchers.iter().filter_map(|w| w.failure().map(|f| format!("{}: {f}", w.name))).collect();
    // The client delivers each row once: a duplicate fails the verdict too.
    let ok =
        reports.iter().all(|r| r.ok() && r.duplicated == 0) && !run.stuck && failures.is_empty();
    println!("{}", summary_header(args, &plural(args.tables, "table"), &run.driven));
    println!("  rows written       {}", sum(|r| r.expected));
    println!("  rows delivered     {}", sum(|r| r.delivered));
    println!("  duplicates         {}", sum(|r| r.duplicated));
    println!("  missing            {}", sum(|r| r.missing));
    println!("  violations         {violations}");
    println!("  resolved-ts lag    p50 {} ms, p99 {} ms", percentile(50), percentile(99));
    println!("  faults injected    {}", run.faults);
    println!("  fingerprint        {:016x}", run.fingerprint);
    if run.stuck {
        println!("  caught up          NO: a resolved ts did not reach the end of the workload");
    }
    for failure in &failures {
        println!("  failed             {failure}");
    }
    for (watcher, report) in watchers.iter().zip(reports) {
        if let Some(violation) = report.first_violation() {
            println!("  {}: {violation}", watcher.name);
        }
    }
    println!("  verdict            {}", if ok { "OK" } else { "FAILED" });
    ok
}
