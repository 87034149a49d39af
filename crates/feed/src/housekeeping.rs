//! The client's periodic work: resolved-ts publication on a timer (the trailing edge the
//! original lacked), gauges (lag, regions, quota), the automatic lock-resolution trigger, the
//! resolver's cooldown housekeeping, and the slow-region and hole report; and, on a task of its
//! own, the refresh of PD's clock ([`run_clock`]).
//!
//! The periodic work never waits for PD: it reads PD's clock as last fetched
//! ([`PdClock`](crate::clock::PdClock), estimated forward with the local clock), so publication
//! and lock resolution go on through a PD outage.

use std::sync::Arc;
use std::time::Duration;

use crate::shared::{Shared, physical_ms};

/// How often gauges are refreshed and the automatic lock-resolution trigger runs.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);
/// How often PD's clock is fetched.
const CLOCK_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired lock-resolution cooldowns, healthy regions' failure histories and idle
/// stores of the transport are forgotten.
const FORGET_INTERVAL: Duration = Duration::from_secs(15);

/// Keeps PD's clock fresh: a timestamp from PD once per [`CLOCK_INTERVAL`] (each call bounded
/// by the PD client's timeout and retries; while PD is down the estimate runs on locally).
pub(crate) async fn run_clock(shared: Arc<Shared>) {
    let mut timer = tokio::time::interval(CLOCK_INTERVAL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        match shared.source.pd().get_ts().await {
            Ok(ts) => shared.clock.observe(ts),
            Err(error) => tracing::debug!(%error, "no timestamp from PD for the clock"),
        }
    }
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut timer = tokio::time::interval(shared.config.advance_interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut gauges_at, mut forget_at, mut report_at) =
        (Duration::ZERO, Duration::ZERO, shared.config.slow_region_interval);
    // The stores whose gauges are exported, so that a forgotten store's are removed.
    let mut stores_shown = Vec::new();
    loop {
        timer.tick().await;
        let now = shared.now();
        for sub in shared.registry.all() {
            shared.publish(&sub, &mut sub.state());
        }
        if now >= gauges_at {
            gauges_at = now + GAUGE_INTERVAL;
            refresh_gauges(&shared);
            refresh_store_gauges(&shared, &mut stores_shown).await;
        }
        if now >= forget_at {
            forget_at = now + FORGET_INTERVAL;
            shared.resolve_requests.forget_old(now);
            let failing = shared.forget_healthy_regions();
            let stores = shared.transport.forget_idle_stores();
            tracing::debug!(
                failing,
                stores,
                "regions with a recent failure; idle stores forgotten"
            );
        }
        if now >= report_at {
            report_at = now + shared.config.slow_region_interval;
            report_slow_regions(&shared);
        }
    }
}

/// Removes the series just set under `name` if the subscription was renamed meanwhile
/// (`Client::name_subscription` removes the old name's series, but may have run before).
fn forget_if_renamed(shared: &Shared, sub: &crate::subscription::Sub, name: &Arc<str>) {
    if !Arc::ptr_eq(&sub.name(), name) {
        shared.metrics.forget_subscription(sub.id, name);
    }
}

/// The per-store gauges (connections, streams, regions) from the transport.
async fn refresh_store_gauges(shared: &Shared, shown: &mut Vec<u64>) {
    let stores = shared.transport.stores();
    for gone in shown.iter().filter(|id| !stores.contains(id)) {
        shared.metrics.forget_store(*gone);
    }
    for &store in &stores {
        if let Some(stats) = shared.transport.store_stats(store).await {
            shared.metrics.set_store(&stats);
        }
    }
    *shown = stores;
}

/// Lag and region gauges, the quota gauge, and the automatic lock-resolution trigger.
fn refresh_gauges(shared: &Shared) {
    let used = shared.buffered_bytes();
    shared.metrics.quota_used.set(i64::try_from(used).unwrap_or(i64::MAX));
    let subs = shared.registry.all();
    if subs.is_empty() {
        return;
    }
    let Some(tso) = shared.clock.estimate() else { return };
    for sub in subs {
        if sub.is_stopped() {
            continue;
        }
        let (resolved, regions) = {
            let state = sub.state();
            (state.lock.resolved_ts(), state.lock.len())
        };
        let (id, name) = (sub.id.to_string(), sub.name());
        let labels = [id.as_str(), &name];
        let lag_ms = physical_ms(tso).saturating_sub(physical_ms(resolved));
        shared.metrics.resolved_ts.with_label_values(&labels).set(to_i64(resolved));
        shared.metrics.resolved_ts_lag.with_label_values(&labels).set(to_i64(lag_ms));
        shared.metrics.regions.with_label_values(&labels).set(to_i64(regions as u64));
        forget_if_renamed(shared, &sub, &name);
        if let Some(fence) = shared.config.lock_resolve_fence
            && u128::from(lag_ms) > fence.as_millis()
        {
            // Only what is older than the fence: the regions lagging beyond it, and in them the
            // locks of transactions started before it (younger ones are normal traffic).
            let fence_ms = u64::try_from(fence.as_millis()).unwrap_or(u64::MAX);
            let target =
                tso.saturating_sub(fence_ms.saturating_mul(1 << kvfeed_regioncache::LOGICAL_BITS));
            let queued = shared.resolve_lock(&sub, target);
            if queued > 0 {
                tracing::info!(subscription = sub.id, lag_ms, queued, "resolving stale locks");
            }
        }
    }
}

/// Slow regions counted at most per subscription and report (the gauge then reads "at least").
const SLOW_REGION_COUNT_LIMIT: usize = 10_000;

/// Logs each subscription's slowest region and its parts without a region, and counts its slow
/// regions (up to [`SLOW_REGION_COUNT_LIMIT`]), through the range lock's min tree: the cost
/// grows with the slow regions, not with all of them.
fn report_slow_regions(shared: &Shared) {
    let Some(tso) = shared.clock.estimate() else { return };
    let slow_ms = u64::try_from(shared.config.slow_region_lag.as_millis()).unwrap_or(u64::MAX);
    let threshold = physical_ms(tso)
        .saturating_sub(slow_ms)
        .saturating_mul(1 << kvfeed_regioncache::LOGICAL_BITS);
    for sub in shared.registry.all() {
        let (slowest, lagging) = {
            let state = sub.state();
            (state.lock.slowest(), state.lock.lagging(threshold, SLOW_REGION_COUNT_LIMIT))
        };
        let slow = lagging.regions.len();
        let (id, name) = (sub.id.to_string(), sub.name());
        shared
            .metrics
            .slow_regions
            .with_label_values(&[id.as_str(), &name])
            .set(to_i64(slow as u64));
        forget_if_renamed(shared, &sub, &name);
        if let Some(slowest) = slowest {
            let lag_ms = physical_ms(tso).saturating_sub(physical_ms(slowest.resolved_ts));
            if lag_ms > slow_ms {
                tracing::warn!(
                    subscription = sub.id,
                    region = slowest.region_id,
                    resolved_ts = slowest.resolved_ts,
                    initialized = slowest.initialized,
                    lag_ms,
                    slow_regions = slow,
                    more = lagging.truncated,
                    "slow region"
                );
            }
        }
        if lagging.holes > 0 {
            tracing::info!(
                subscription = sub.id,
                holes = lagging.holes,
                "parts of the span without a region, lagging"
            );
        }
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
