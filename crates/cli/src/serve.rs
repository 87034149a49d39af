//! `kvfeed sim serve`: the simulated cluster and a workload (raw keys, or TiDB tables with DDL)
//! until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kvfeed_sim::{Cluster, CommittedRow, Op, TidbStep, TidbWorkload, TxnOutcome};

use crate::Failure;
use crate::faults;
use crate::layout;
use crate::output::hex;

/// Arguments of `kvfeed sim serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Stores (TiKV servers).
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Regions over the tables.
    #[arg(long, default_value_t = 16)]
    regions: usize,
    /// Tables (ids 100, 101, ...).
    #[arg(long, default_value_t = 1)]
    tables: usize,
    /// Transactions per second (0: no workload).
    #[arg(long, default_value_t = 100, value_name = "TXN/S")]
    rate: u32,
    /// Bytes of each value the workload writes. At least 1.
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    value_len: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds between the stores' resolved-ts rounds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    resolved_interval_ms: u64,
    /// On exit, write every committed row to FILE as JSON lines (for checking a watcher).
    #[arg(long, value_name = "FILE")]
    commits: Option<PathBuf>,
    /// Run a GC worker with this GC life time: versions older than SECS before now are
    /// compacted, except what the service safe points of clients (such as `watch`) hold.
    #[arg(long, value_name = "SECS")]
    gc_life_time: Option<u64>,
    /// Write TiDB tables instead of raw keys: the schema under TiDB's meta keys (database
    /// `demo`, tables `t0`, `t1`, ..), rows in TiDB's row formats, and DDL jobs (add and drop
    /// column, rename, truncate) through `mysql.tidb_ddl_job`; watch them with
    /// `watch --table demo.t0`.
    #[arg(long)]
    tidb: bool,
    /// With `--tidb`: one transaction in N, on average, is a DDL job (0: none).
    #[arg(long, default_value_t = 100, value_name = "N", requires = "tidb")]
    ddl_every: u64,
    /// With `--tidb`: on exit, write the change events a watcher of every table must print
    /// (`watch --table demo.t0 ..`'s JSON lines, built from the values written) to FILE.
    #[arg(long, value_name = "FILE", requires = "tidb")]
    tidb_events: Option<PathBuf>,
    /// PD's port on 127.0.0.1 (default: an ephemeral one): a simulator restarted with the same
    /// port comes back where a running `watch` looks for it (the stores' ports are learnt from
    /// PD).
    #[arg(long, value_name = "PORT")]
    pd_port: Option<u16>,
    /// Inject the demo's faults (splits, merges, leader moves, store restarts, stream resets,
    /// busy and congested stores, abandoned locks), one every 700 ms from a schedule seeded by
    /// `--seed`.
    #[arg(long)]
    chaos: bool,
    /// Seconds between status lines on stderr (regions, transactions, faults); 0: none.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    status_every: u64,
}

/// The workload `sim serve` runs.
enum Load {
    Raw(kvfeed_sim::Workload),
    Tidb(TidbWorkload),
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    if args.value_len == 0 {
        return Err(Failure::usage("--value-len must be at least 1"));
    }
    if args.resolved_interval_ms == 0 {
        return Err(Failure::usage("--resolved-interval-ms must be at least 1"));
    }
    layout::check_sizes(args.stores, args.regions, args.tables)?;
    // Files written at exit are checked now: a typo must not cost the whole run.
    for path in args.commits.iter().chain(&args.tidb_events) {
        std::fs::File::create(path)
            .map_err(|error| Failure::usage(format!("cannot write {}: {error}", path.display())))?;
    }
    let tables = layout::tables(args.tables);
    let mut config = layout::cluster_config(args.stores, args.regions, &tables);
    config.resolved_ts_interval = Some(Duration::from_millis(args.resolved_interval_ms));
    config.record_commits = args.commits.is_some();
    config.gc_life_time = args.gc_life_time.map(Duration::from_secs);
    // Admission is the client's job here; the store takes any number of scans.
    config.max_pending_scans = usize::MAX;
    config.pd_port = args.pd_port;
    let cluster = Cluster::start(config).await.map_err(|error| {
        Failure::runtime(format!("cannot start the simulated cluster: {error}"))
    })?;
    let mut load = if args.tidb {
        let mut workload = layout::tidb_workload(args.seed, &tables, args.ddl_every);
        workload
            .bootstrap(&cluster)
            .map_err(|error| Failure::runtime(format!("cannot write the TiDB schema: {error}")))?;
        Load::Tidb(workload)
    } else {
        Load::Raw(layout::workload(args.seed, &tables, args.value_len))
    };
    // The PD address first, alone on its line, for scripts.
    println!("{}", cluster.pd_address());
    let _ = std::io::stdout().flush();
    let what = match &load {
        Load::Raw(_) => format!("tables {tables:?}"),
        Load::Tidb(workload) => format!("TiDB tables {}", workload.table_names().join(", ")),
    };
    eprintln!(
        "simulated cluster {}: PD {}, {} stores, {} regions, {what}, {} txn/s; Ctrl-C stops",
        cluster.cluster_id(),
        cluster.pd_address(),
        args.stores.max(1),
        cluster.region_count(),
        args.rate
    );
    let mut timer = (args.rate > 0).then(|| {
        let mut timer = tokio::time::interval(Duration::from_secs(1) / args.rate);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let mut schedule = args.chaos.then(|| faults::schedule(args.seed, &tables, args.tidb));
    let mut fault_timer = repeating(schedule.is_some().then_some(faults::FAULT_EVERY));
    let mut status_timer =
        repeating((args.status_every > 0).then(|| Duration::from_secs(args.status_every)));
    let started = std::time::Instant::now();
    let (mut committed, mut faults) = (0u64, 0u64);
    let stop = crate::signal::shutdown();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tick(&mut timer) => {
                let done = match &mut load {
                    Load::Raw(workload) => matches!(
                        workload.step(&cluster),
                        TxnOutcome::Committed { .. } | TxnOutcome::OnePc { .. }
                    ),
                    Load::Tidb(workload) => {
                        matches!(workload.step(&cluster), TidbStep::Rows(_) | TidbStep::Ddl(_))
                    }
                };
                committed += u64::from(done);
            }
            () = tick(&mut fault_timer) => {
                if let Some(schedule) = &mut schedule {
                    faults += u64::from(faults::inject_next(&cluster, schedule).await);
                }
            }
            () = tick(&mut status_timer) => {
                let secs = started.elapsed().as_secs().max(1);
                eprintln!(
                    "after {secs} s: {} regions, {committed} transactions committed ({} txn/s), {faults} faults",
                    cluster.region_count(),
                    committed / secs
                );
            }
        }
    }
    if let Some(path) = &args.commits {
        write_commits(path, &cluster.committed_rows()).map_err(|error| {
            Failure::runtime(format!("cannot write {}: {error}", path.display()))
        })?;
    }
    if let (Some(path), Load::Tidb(workload)) = (&args.tidb_events, &load) {
        write_lines(path, workload.expected()).map_err(|error| {
            Failure::runtime(format!("cannot write {}: {error}", path.display()))
        })?;
    }
    cluster.shutdown().await;
    Ok(())
}

/// One JSON value per line.
fn write_lines(path: &std::path::Path, values: &[serde_json::Value]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for value in values {
        writeln!(out, "{value}")?;
    }
    out.flush()
}

/// A timer firing every `every` from one period on, or none.
fn repeating(every: Option<Duration>) -> Option<tokio::time::Interval> {
    every.map(|every| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One JSON object per committed row, in the shape `watch` prints rows.
fn write_commits(path: &std::path::Path, rows: &[CommittedRow]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for row in rows {
        let op = match row.op {
            Op::Put => "put",
            Op::Delete => "delete",
        };
        let old =
            row.old_value.as_ref().map_or_else(|| "null".to_owned(), |v| format!("\"{}\"", hex(v)));
        writeln!(
            out,
            r#"{{"kind":"row","op":"{op}","key":"{}","value":"{}","old_value":{old},"start_ts":{},"commit_ts":{}}}"#,
            hex(&row.key),
            hex(&row.value),
            row.start_ts,
            row.commit_ts
        )?;
    }
    out.flush()
}
