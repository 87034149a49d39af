//! The arguments of `kvfeed demo`, the timings both of its runs use, and what both print: the
//! summary's first line and the plain progress line for a stderr that is not a terminal.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Arguments of `kvfeed demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Stores (TiKV servers).
    #[arg(long, default_value_t = 3)]
    pub(crate) stores: usize,
    /// Regions over the tables.
    #[arg(long, default_value_t = 64)]
    pub(crate) regions: usize,
    /// Tables, each with its own subscription.
    #[arg(long, default_value_t = 4)]
    pub(crate) tables: usize,
    /// Transactions per second.
    #[arg(long, default_value_t = 300, value_name = "TXN/S")]
    pub(crate) rate: u32,
    /// Seconds of workload.
    #[arg(long, default_value_t = 40, value_name = "S")]
    pub(crate) duration: u64,
    /// Inject faults: splits, merges, leader moves, store restarts, stream resets, busy and
    /// congested stores, abandoned locks.
    #[arg(long)]
    pub(crate) chaos: bool,
    /// Seed of the workload and the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Write raw keys and values instead of TiDB tables, and check every raw row (the demo
    /// otherwise writes TiDB tables `demo.t0`, .. with DDL jobs and watches them decoded).
    #[arg(long)]
    pub(crate) raw: bool,
    /// One transaction in N, on average, is a DDL job (add or drop column, rename, truncate).
    /// 0: none. Not with `--raw`.
    #[arg(long, default_value_t = 200, value_name = "N", conflicts_with = "raw")]
    pub(crate) ddl_every: u64,
}

/// How long the subscribers get to catch up after the workload stops.
pub(super) const CATCH_UP: Duration = Duration::from_secs(60);
/// Time between resolved-ts lag samples.
pub(super) const LAG_SAMPLE: Duration = Duration::from_millis(100);

/// `n` and `word`, with an `s` unless `n` is 1.
pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// The summary's first line: the layout, the transaction rate asked and achieved (`steps`
/// transactions run), chaos and seed.
pub(super) fn summary_header(args: &Args, tables: &str, steps: u64) -> String {
    let achieved = steps as f64 / args.duration.max(1) as f64;
    format!(
        "kvfeed demo: {}, {}, {tables}, {achieved:.0} txn/s achieved ({} asked) for {} s, chaos {} (seed {})",
        plural(args.stores, "store"),
        plural(args.regions, "region"),
        args.rate,
        args.duration,
        if args.chaos { "on" } else { "off" },
        args.seed
    )
}

/// Seconds between plain progress lines when stderr is not a terminal (a log file).
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The progress display for logs: when stderr is not a terminal (where the live display is not
/// drawn), the header line printed every [`PLAIN_EVERY`].
#[derive(Debug)]
pub(super) struct PlainProgress {
    enabled: bool,
    last: Cell<Option<Instant>>,
}

impl PlainProgress {
    pub(super) fn new() -> Self {
        Self { enabled: !std::io::stderr().is_terminal(), last: Cell::new(None) }
    }

    /// Prints `line` if stderr is not a terminal and the last one is old enough.
    pub(super) fn offer(&self, line: &str) {
        if !self.enabled || self.last.get().is_some_and(|at| at.elapsed() < PLAIN_EVERY) {
            return;
        }
        self.last.set(Some(Instant::now()));
        eprintln!("{line}");
    }
}
