//! `kvfeed demo` with TiDB tables (the default): the simulator's TiDB workload writes tables
//! `demo.t0`, .. in TiDB's encodings and runs DDL jobs on them, a [`Watcher`] watches them by
//! name, the progress display shows each table's last decoded row, and the TiDB verifier checks
//! every delivered event column by column against what the workload wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kvfeed::Client;
use kvfeed_cli::{DecodedWatcher, tso_age_ms};
use kvfeed_sim::{Cluster, TidbReport, TidbWorkload};
use kvfeed_span::table::table_id_of;
use kvfeed_tidb::key::DDL_JOB_TABLE_ID;
use kvfeed_tidb_watch::{TableName, Watcher};
use tokio::task::JoinHandle;

use super::drive::{drive, fingerprint};
use super::settings::{Args, CATCH_UP, LAG_SAMPLE, PlainProgress, Summary, plural, summary_header};
use crate::Failure;
use crate::faults;
use crate::layout;

/// Characters of a table's sample line shown in the progress display.
const SAMPLE_WIDTH: usize = 110;

/// Runs the TiDB demo on `cluster` and prints its summary; returns whether the verifier passed.
pub(super) async fn run(
    args: &Args,
    cluster: Arc<Cluster>,
    client: Client,
    runner: JoinHandle<Result<(), kvfeed::Error>>,
) -> Result<bool, Failure> {
    let tables = layout::tables(args.tables);
    let mut workload = layout::tidb_workload(args.seed, &tables, args.ddl_every);
    let start_ts = workload
        .bootstrap(&cluster)
        .map_err(|error| Failure::runtime(format!("cannot write the TiDB schema: {error}")))?;
    let names = workload.table_names();
    let parsed: Vec<TableName> = names
        .iter()
        .map(|name| TableName::parse(name))
        .collect::<Result<_, _>>()
        .map_err(|error| Failure::runtime(format!("the workload's table names: {error}")))?;
    let watcher = Watcher::start(&client, &parsed, start_ts)
        .await
        .map_err(|error| Failure::runtime(format!("cannot watch the tables: {error}")))?;
    let (decoded, reader) = DecodedWatcher::spawn(watcher, names.clone(), start_ts);

    let progress = Progress::new(&names, args.duration);
    let faults = AtomicU64::new(0);
    let schedule = args.chaos.then(|| faults::schedule(args.seed, &tables, true));
    let (mut redraw, mut sampled) = (Instant::now(), Instant::now());
    let mut lags = Vec::new();
    let each_tick = |workload: &TidbWorkload| {
        if sampled.elapsed() >= LAG_SAMPLE {
            sampled = Instant::now();
            lags.push(tso_age_ms(decoded.resolved()));
        }
        if redraw.elapsed() >= Duration::from_millis(250) {
            redraw = Instant::now();
            progress.update(&cluster, &decoded, workload, &faults, "running");
        }
    };
    let step = |workload: &mut TidbWorkload, cluster: &Cluster| workload.step(cluster);
    let driven = drive(args, &cluster, &mut workload, step, schedule, &faults, each_tick).await;
    let final_ts = cluster.now_ts();
    let caught_up = async {
        while decoded.resolved() < final_ts && decoded.failure().is_none() {
            progress.update(&cluster, &decoded, &workload, &faults, "catching up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let stuck = tokio::time::timeout(CATCH_UP, caught_up).await.is_err();
    progress.update(&cluster, &decoded, &workload, &faults, "verifying");
    reader.abort();
    let _ = reader.await;
    progress.finish();
    client.shutdown();
    let _ = runner.await;

    let report = decoded.report(workload.expected());
    // The tables' rows, not the DDL job rows (they carry timestamps).
    let fingerprint = fingerprint(&cluster.committed_rows(), |key| {
        table_id_of(key).is_some_and(|table| table != DDL_JOB_TABLE_ID)
    });
    let summary = Summary { faults: faults.load(Ordering::Relaxed), stuck, driven, fingerprint };
    let ok = summarize(args, &names, &decoded, &report, &workload, &lags, &summary);
    Ok(ok)
}

/// The live display on stderr: a header and each table's last decoded row (drawn only when
/// stderr is a terminal).
struct Progress {
    multi: MultiProgress,
    header: ProgressBar,
    tables: Vec<(String, ProgressBar)>,
    started: Instant,
    duration: u64,
    plain: PlainProgress,
}

impl Progress {
    fn new(names: &[String], duration: u64) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {msg}").expect("valid template");
        let header = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
        let tables = names
            .iter()
            .map(|name| {
                (name.clone(), multi.add(ProgressBar::new_spinner().with_style(style.clone())))
            })
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

    fn update(
        &self,
        cluster: &Cluster,
        decoded: &DecodedWatcher,
        workload: &TidbWorkload,
        faults: &AtomicU64,
        phase: &str,
    ) {
        let elapsed = self.started.elapsed().as_secs_f64();
        for (name, bar) in &self.tables {
            let sample = decoded.sample(name).unwrap_or_else(|| "(no row yet)".to_owned());
            let sample: String = sample.chars().take(SAMPLE_WIDTH).collect();
            bar.set_message(format!("{name}: {sample}"));
            bar.tick();
        }
        let rows = decoded.rows();
        let rate = if elapsed > 0.0 { rows as f64 / elapsed } else { 0.0 };
        let line = format!(
            "{phase} {elapsed:.0}/{} s | {} regions | {rows} rows decoded ({rate:.0}/s) | DDL {} run, {} seen | resolved-ts lag {} ms | faults {}",
            self.duration,
            cluster.region_count(),
            workload.ddl_count(),
            decoded.ddl(),
            tso_age_ms(decoded.resolved()),
            faults.load(Ordering::Relaxed)
        );
        self.plain.offer(&line);
        self.header.set_message(line);
        self.header.tick();
    }

    fn finish(&self) {
        for bar in self.tables.iter().map(|(_, bar)| bar).chain([&self.header]) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Prints the summary on stdout; returns whether every check held.
fn summarize(
    args: &Args,
    names: &[String],
    decoded: &DecodedWatcher,
    report: &TidbReport,
    workload: &TidbWorkload,
    lags: &[u64],
    run: &Summary,
) -> bool {
    let mut lags = lags.to_vec();
    lags.sort_unstable();
    let percentile =
        |p: usize| lags.get(lags.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
    let failure = decoded.failure();
    let ok = report.is_clean() && !run.stuck && failure.is_none();
    println!(
        "{}",
        summary_header(
            args,
            &format!("{} ({})", plural(names.len(), "TiDB table"), names.join(", ")),
            &run.driven
        )
    );
    println!("  rows written       {}", report.rows_expected);
    println!("  rows delivered     {}", report.rows_delivered);
    println!(
        "  DDL jobs           {} run, {} events delivered of {} expected",
        workload.ddl_count(),
        report.ddl_delivered,
        report.ddl_expected
    );
    println!("  duplicates         {}", report.unexpected);
    println!("  missing            {}", report.missing);
    println!("  column mismatches  {}", report.mismatched);
    println!("  violations         {}", report.out_of_order);
    println!("  resolved-ts lag    p50 {} ms, p99 {} ms", percentile(50), percentile(99));
    println!("  faults injected    {}", run.faults);
    println!("  fingerprint        {:016x}", run.fingerprint);
    if run.stuck {
        println!("  caught up          NO: the resolved ts did not reach the end of the workload");
    }
    if let Some(failure) = failure {
        println!("  failed             {failure}");
    }
    for violation in report.violations.iter().take(3) {
        println!("  first violations   {violation}");
    }
    for name in names {
        if let Some(sample) = decoded.sample(name) {
            println!(
                "  sample {name}: {}",
                sample.chars().take(SAMPLE_WIDTH * 2).collect::<String>()
            );
        }
    }
    println!("  verdict            {}", if ok { "OK" } else { "FAILED" });
    ok
}
