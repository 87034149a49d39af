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
    /// Seed of the workload and the fault schedule: the same seed runs the same transactions
    /// and faults in the same order (without `--chaos`, the same rows: compare the summary's
    /// fingerprint).
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

/// What a driven workload did ([`drive`](super::drive::drive)).
#[derive(Debug)]
pub(super) struct Driven {
    /// Transactions run (`--rate` x `--duration`).
    pub(super) steps: u64,
    /// How long they took.
    pub(super) elapsed: Duration,
}

/// What both demos' summaries report beside the verifier's findings.
#[derive(Debug)]
pub(super) struct Summary {
    /// Faults that applied.
    pub(super) faults: u64,
    /// Whether the subscribers failed to catch up with the end of the workload.
    pub(super) stuck: bool,
    pub(super) driven: Driven,
    /// [`fingerprint`](super::drive::fingerprint) of the rows committed.
    pub(super) fingerprint: u64,
}

/// The summary's first line: the layout, the transactions run and the rate asked and achieved
/// (they took longer than `--duration` where the machine could not keep up), chaos and seed.
pub(super) fn summary_header(args: &Args, tables: &str, driven: &Driven) -> String {
    let achieved = driven.steps as f64 / driven.elapsed.as_secs_f64().max(0.001);
    format!(
        "kvfeed demo: {}, {}, {tables}, {} in {:.1} s ({achieved:.0} txn/s achieved, {} asked), chaos {} (seed {})",
        plural(args.stores, "store"),
        plural(args.regions, "region"),
        plural(usize::try_from(driven.steps).unwrap_or(usize::MAX), "transaction"),
        driven.elapsed.as_secs_f64(),
        args.rate,
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
