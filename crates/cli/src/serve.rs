//! `kvfeed sim serve`: the simulated cluster and a workload until interrupted.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kvfeed_sim::{Cluster, CommittedRow, Op};

use crate::Failure;
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
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    if args.value_len == 0 {
        return Err(Failure::usage("--value-len must be at least 1"));
    }
    let tables = layout::tables(args.tables);
    let mut config = layout::cluster_config(args.stores, args.regions, &tables);
    config.resolved_ts_interval = Some(Duration::from_millis(args.resolved_interval_ms.max(1)));
    config.record_commits = args.commits.is_some();
    config.gc_life_time = args.gc_life_time.map(Duration::from_secs);
    // Admission is the client's job here; the store takes any number of scans.
    config.max_pending_scans = usize::MAX;
    let cluster = Cluster::start(config).await.map_err(|error| {
        Failure::runtime(format!("cannot start the simulated cluster: {error}"))
    })?;
    // The PD address first, alone on its line, for scripts.
    println!("{}", cluster.pd_address());
    let _ = std::io::stdout().flush();
    eprintln!(
        "simulated cluster {}: PD {}, {} stores, {} regions, tables {:?}, {} txn/s; Ctrl-C stops",
        cluster.cluster_id(),
        cluster.pd_address(),
        args.stores.max(1),
        cluster.region_count(),
        tables,
        args.rate
    );
    let mut workload = layout::workload(args.seed, &tables, args.value_len);
    let mut timer = (args.rate > 0).then(|| {
        let mut timer = tokio::time::interval(Duration::from_secs(1) / args.rate);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tick(&mut timer) => { workload.step(&cluster); }
        }
    }
    if let Some(path) = &args.commits {
        write_commits(path, &cluster.committed_rows()).map_err(|error| {
            Failure::runtime(format!("cannot write {}: {error}", path.display()))
        })?;
    }
    cluster.shutdown().await;
    Ok(())
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
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
