//! The fault loop of `kvfeed demo --chaos`: a fault of a seeded schedule every
//! [`FAULT_EVERY`] until the deadline, then the lasting ones lifted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kvfeed_sim::{Cluster, FaultSchedule};

use super::settings::FAULT_EVERY;

/// Waits for the fault task (it ends at the deadline) and lifts the faults that last: busy and
/// congested stores.
pub(super) async fn stop_faults(cluster: &Cluster, chaos: Option<tokio::task::JoinHandle<()>>) {
    if let Some(chaos) = chaos {
        let _ = chaos.await;
    }
    for store in cluster.store_ids() {
        cluster.set_server_busy(store, 0);
        cluster.set_congested(store, 0);
    }
}

/// Applies a fault of the schedule every `FAULT_EVERY` until the deadline; counts the applied.
pub(super) async fn run_faults(
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
