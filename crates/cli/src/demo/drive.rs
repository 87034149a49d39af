//! The demo's workload clock: `--rate` transactions a second counted out per tick of [`TICK`]
//! and, with `--chaos`, a fault every [`FAULT_TICKS`] ticks, both from the workload's own loop.
//! A seed therefore runs the same transactions and the same faults in the same order on any
//! machine: a slow one takes longer, it does not run fewer (the summary reports the rate
//! achieved). Without `--chaos` the committed rows are then identical from run to run, which
//! [`fingerprint`] shows; with it, what the client does on its own clock (resolving the locks a
//! fault abandoned, retrying) can still turn out differently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kvfeed_sim::{Cluster, CommittedRow, FaultSchedule, Op};

use super::settings::{Args, Driven};
use crate::faults::{self, FAULT_EVERY};

/// One tick of the workload's clock.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// Ticks between faults (`FAULT_EVERY`, the pace `sim serve --chaos` keeps too).
const FAULT_TICKS: u64 = (FAULT_EVERY.as_millis() / TICK.as_millis()) as u64;

/// Transactions in tick `tick` at `rate` a second: the ticks of a second add up to `rate`.
fn steps_in(tick: u64, rate: u64) -> u64 {
    let per_second = Duration::from_secs(1).as_millis() as u64 / TICK.as_millis() as u64;
    (tick + 1) * rate / per_second - tick * rate / per_second
}

/// Runs `step` on `workload` as the clock counts (`--rate` x `--duration` steps), a fault of
/// `schedule` every [`FAULT_TICKS`] ticks (counted in `faults` when it applied), and `each_tick`
/// after every tick (progress, lag samples); then lifts the faults that last.
pub(super) async fn drive<W, Outcome>(
    args: &Args,
    cluster: &Cluster,
    workload: &mut W,
    step: impl Fn(&mut W, &Cluster) -> Outcome,
    mut schedule: Option<FaultSchedule>,
    faults: &AtomicU64,
    mut each_tick: impl FnMut(&W),
) -> Driven {
    let ticks = args.duration * (Duration::from_secs(1).as_millis() / TICK.as_millis()) as u64;
    let started = Instant::now();
    // Each tick's transactions at its end: `--duration` s of ticks take `--duration` s.
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut steps = 0;
    for tick in 0..ticks {
        timer.tick().await;
        for _ in 0..steps_in(tick, u64::from(args.rate)) {
            // What became of it is the verifier's business, from the cluster's record.
            let _outcome = step(workload, cluster);
            steps += 1;
        }
        // As `sim serve --chaos`: no fault in the last stretch before the end.
        let fault_due = (tick + 1) % FAULT_TICKS == 0 && tick + FAULT_TICKS < ticks;
        if let Some(schedule) = schedule.as_mut().filter(|_| fault_due)
            && faults::inject_next(cluster, schedule).await
        {
            faults.fetch_add(1, Ordering::Relaxed);
        }
        each_tick(workload);
    }
    faults::stop_faults(cluster, None).await;
    Driven { steps, elapsed: started.elapsed() }
}

/// A fingerprint of the committed rows `keep` selects: FNV-1a over each row's key, op and
/// value in commit order (timestamps left out, as they follow the wall clock). Two runs of one
/// seed without `--chaos` have the same.
pub(super) fn fingerprint(rows: &[CommittedRow], keep: impl Fn(&[u8]) -> bool) -> u64 {
    let mut kept: Vec<&CommittedRow> = rows.iter().filter(|row| keep(&row.key)).collect();
    kept.sort_by(|a, b| (a.commit_ts, &a.key).cmp(&(b.commit_ts, &b.key)));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for row in kept {
        feed(&(row.key.len() as u64).to_le_bytes());
        feed(&row.key);
        feed(&[u8::from(row.op == Op::Delete)]);
        feed(&(row.value.len() as u64).to_le_bytes());
        feed(&row.value);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn the_ticks_of_a_second_add_up_to_the_rate() {
        for rate in [1, 7, 10, 300, 1001] {
            let second: u64 = (0..10).map(|tick| steps_in(tick, rate)).sum();
            assert_eq!(second, rate);
            let ten: u64 = (0..100).map(|tick| steps_in(tick, rate)).sum();
            assert_eq!(ten, rate * 10);
        }
        assert_eq!(FAULT_TICKS, 7);
    }

    #[test]
    fn the_fingerprint_ignores_timestamps_and_order_of_recording() {
        let row = |key: &'static [u8], value: &'static [u8], commit_ts| CommittedRow {
            key: Bytes::from_static(key),
            op: Op::Put,
            value: Bytes::from_static(value),
            old_value: None,
            start_ts: commit_ts - 1,
            commit_ts,
        };
        let a = [row(b"a", b"1", 10), row(b"b", b"2", 20)];
        let later = [row(b"b", b"2", 40), row(b"a", b"1", 30)];
        assert_eq!(fingerprint(&a, |_| true), fingerprint(&later, |_| true));
        let other = [row(b"a", b"1", 10), row(b"b", b"3", 20)];
        assert_ne!(fingerprint(&a, |_| true), fingerprint(&other, |_| true));
        assert_eq!(fingerprint(&a, |k| k == b"a"), fingerprint(&[row(b"a", b"1", 5)], |_| true));
    }
}
