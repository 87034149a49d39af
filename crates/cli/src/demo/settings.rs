//! The arguments of `kvfeed demo` and the timings both of its runs use.

use std::time::Duration;

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
/// Time between faults with `--chaos`.
pub(super) const FAULT_EVERY: Duration = Duration::from_millis(700);
