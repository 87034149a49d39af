//! The simulator's faults as `demo --chaos` and `sim serve --chaos` inject them: a schedule
//! seeded by `--seed` over the tables' rows, one fault every [`FAULT_EVERY`] (the demo counts
//! it in ticks of its workload clock, `sim serve` on a timer).

use std::time::Duration;

use kvfeed_sim::{Cluster, FaultSchedule};
use kvfeed_span::table::record_key;

use crate::layout;

/// Time between faults.
pub(crate) const FAULT_EVERY: Duration = Duration::from_millis(700);

/// The schedule of `seed` drawing split points and lock keys from the tables' rows. For TiDB
/// tables no fault commits a value of its own: every value stays one the workload wrote (and
/// the decoder can read).
pub(crate) fn schedule(seed: u64, tables: &[i64], tidb: bool) -> FaultSchedule {
    let keys: Vec<Vec<u8>> = tables
        .iter()
        .flat_map(|&t| (0..layout::KEYS_PER_TABLE).map(move |h| record_key(t, h)))
        .collect();
    let schedule = FaultSchedule::new(seed, keys);
    if tidb { schedule.without_foreign_commits() } else { schedule }
}

/// Injects the schedule's next fault; returns whether it applied.
pub(crate) async fn inject_next(cluster: &Cluster, schedule: &mut FaultSchedule) -> bool {
    let fault = schedule.next_fault(cluster);
    match cluster.apply_fault(&fault).await {
        Ok(()) => {
            tracing::info!(?fault, "fault injected");
            true
        }
        Err(error) => {
            tracing::debug!(?fault, %error, "fault not applicable");
            false
        }
    }
}

/// Waits for the fault task (it ends at the deadline) and lifts the faults that last: busy and
/// congested stores.
pub(crate) async fn stop_faults(cluster: &Cluster, chaos: Option<tokio::task::JoinHandle<()>>) {
    if let Some(chaos) = chaos {
        let _ = chaos.await;
    }
    for store in cluster.store_ids() {
        cluster.set_server_busy(store, 0);
        cluster.set_congested(store, 0);
    }
}
