//! Prometheus metrics, named after TiCDC's `kvclient` set (reference §8.3) under the `kvfeed`
//! namespace. Each [`Client`](crate::Client) registers its own in its own registry
//! ([`Client::metrics_text`](crate::Client::metrics_text)).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The labels of the per-subscription series: its id and its name (the span, as hex, unless
/// named with [`Client::name_subscription`](crate::Client::name_subscription)).
const SUBSCRIPTION_LABELS: [&str; 2] = ["subscription", "name"];

/// The client's metrics.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// Rows received from TiKV, by log type.
    pub(crate) pull_events: IntCounterVec,
    /// Events delivered to subscribers, by type (`row`, `resolved`).
    pub(crate) send_events: IntCounterVec,
    /// Region errors, by kind (TiCDC's `event_feed_error_count` types).
    pub(crate) region_errors: IntCounterVec,
    /// Region registrations sent to stores.
    pub(crate) region_requests: IntCounter,
    /// Regions per resolved-ts batch.
    pub(crate) batch_resolved_size: Histogram,
    /// The resolved ts per subscription (every row at or below it was delivered).
    pub(crate) resolved_ts: IntGaugeVec,
    /// Resolved-ts lag behind PD's clock, per subscription, in milliseconds.
    pub(crate) resolved_ts_lag: IntGaugeVec,
    /// Locked regions per subscription.
    pub(crate) regions: IntGaugeVec,
    /// Regions whose resolved ts lags beyond the slow-region threshold, per subscription.
    pub(crate) slow_regions: IntGaugeVec,
    /// Pooled connections per store.
    pub(crate) store_connections: IntGaugeVec,
    /// Running CDC streams per store and mode (`multiplexed`, `per_subscription`): 0 while a
    /// store with regions to serve is being reconnected.
    pub(crate) store_streams: IntGaugeVec,
    /// Regions registered on a store's streams.
    pub(crate) store_regions: IntGaugeVec,
    /// Lock resolution: time queued (`wait`) and time running (`run`), in seconds.
    pub(crate) lock_resolve_duration: HistogramVec,
    /// Bytes of delivered rows not yet read by subscribers.
    pub(crate) quota_used: IntGauge,
    /// Rows a region read again from its checkpoint sent a second time, not delivered again
    /// (`Config::exactly_once`).
    pub(crate) duplicates_dropped: IntCounter,
    /// Broken internal invariants (a refused lock or unlock, a region registered twice): always
    /// 0 unless kvfeed has a bug. Each is also logged at error level.
    pub(crate) internal_errors: IntCounter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| {
            Opts::new(name, help).namespace("kvfeed").subsystem("kvclient")
        };
        let pull_events = IntCounterVec::new(
            opts("pull_event_count", "Rows received from TiKV by type"),
            &["type"],
        )
        .expect("valid metric");
        let send_events = IntCounterVec::new(
            opts("send_event_count", "Events delivered to subscribers by type"),
            &["type"],
        )
        .expect("valid metric");
        let region_errors =
            IntCounterVec::new(opts("event_feed_error_count", "Region errors by kind"), &["type"])
                .expect("valid metric");
        let region_requests = IntCounter::with_opts(opts(
            "region_request_count",
            "Region registrations sent to stores",
        ))
        .expect("valid metric");
        let batch_resolved_size = Histogram::with_opts(
            HistogramOpts::from(opts("batch_resolved_event_size", "Regions per resolved-ts batch"))
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        let per_subscription = |name: &str, help: &str| {
            IntGaugeVec::new(opts(name, help), &SUBSCRIPTION_LABELS).expect("valid metric")
        };
        let per_store = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(opts(name, help), labels).expect("valid metric")
        };
        let resolved_ts = per_subscription("resolved_ts", "The resolved ts per subscription");
        let resolved_ts_lag = per_subscription(
            "resolved_ts_lag_ms",
            "Resolved-ts lag behind PD's clock per subscription (ms)",
        );
        let regions = per_subscription("region_count", "Locked regions per subscription");
        let slow_regions = per_subscription(
            "slow_region_count",
            "Regions lagging beyond the slow threshold per subscription",
        );
        let store_connections =
            per_store("store_connection_count", "Pooled connections per store", &["store"]);
        let store_streams = per_store(
            "store_stream_count",
            "Running CDC streams per store (0 while reconnecting)",
            &["store", "mode"],
        );
        let store_regions =
            per_store("store_region_count", "Regions registered per store", &["store"]);
        let lock_resolve_duration = HistogramVec::new(
            HistogramOpts::from(opts(
                "lock_resolve_duration_seconds",
                "Lock resolution time queued (wait) and running (run)",
            ))
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["action"],
        )
        .expect("valid metric");
        let quota_used = IntGauge::with_opts(opts(
            "memory_quota_used_bytes",
            "Delivered row bytes not yet read",
        ))
        .expect("valid metric");
        let duplicates_dropped = IntCounter::with_opts(opts(
            "duplicate_rows_dropped_count",
            "Rows sent again by a region read from its checkpoint, not delivered twice",
        ))
        .expect("valid metric");
        let internal_errors = IntCounter::with_opts(opts(
            "internal_error_count",
            "Broken internal invariants (always 0 unless kvfeed has a bug)",
        ))
        .expect("valid metric");
        let metrics = Self {
            registry,
            pull_events,
            send_events,
            region_errors,
            region_requests,
            batch_resolved_size,
            resolved_ts,
            resolved_ts_lag,
            regions,
            slow_regions,
            store_connections,
            store_streams,
            store_regions,
            lock_resolve_duration,
            quota_used,
            duplicates_dropped,
            internal_errors,
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(self.pull_events.clone()),
            Box::new(self.send_events.clone()),
            Box::new(self.region_errors.clone()),
            Box::new(self.region_requests.clone()),
            Box::new(self.batch_resolved_size.clone()),
            Box::new(self.resolved_ts.clone()),
            Box::new(self.resolved_ts_lag.clone()),
            Box::new(self.regions.clone()),
            Box::new(self.slow_regions.clone()),
            Box::new(self.store_connections.clone()),
            Box::new(self.store_streams.clone()),
            Box::new(self.store_regions.clone()),
            Box::new(self.lock_resolve_duration.clone()),
            Box::new(self.quota_used.clone()),
            Box::new(self.duplicates_dropped.clone()),
            Box::new(self.internal_errors.clone()),
        ];
        for collector in collectors {
            // A fresh registry with distinct names: registration cannot fail.
            self.registry.register(collector).expect("metric names are distinct");
        }
    }

    /// Drops the per-subscription series of a subscription (under its name `name`).
    pub(crate) fn forget_subscription(&self, id: u64, name: &str) {
        let labels = [id.to_string(), name.to_owned()];
        let labels = [labels[0].as_str(), labels[1].as_str()];
        for vec in [&self.resolved_ts, &self.resolved_ts_lag, &self.regions, &self.slow_regions] {
            let _ = vec.remove_label_values(&labels);
        }
    }

    /// Sets the gauges of a store from its stats.
    pub(crate) fn set_store(&self, stats: &kvfeed_transport::StoreStats) {
        let store = stats.store_id.to_string();
        let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        self.store_connections.with_label_values(&[&store]).set(gauge(stats.connections));
        self.store_regions.with_label_values(&[&store]).set(gauge(stats.regions));
        for (mode, count) in [
            ("multiplexed", stats.multiplexed_streams),
            ("per_subscription", stats.per_subscription_streams),
        ] {
            self.store_streams.with_label_values(&[&store, mode]).set(gauge(count));
        }
    }

    /// Drops the series of a store the client forgot.
    pub(crate) fn forget_store(&self, store_id: u64) {
        let store = store_id.to_string();
        let _ = self.store_connections.remove_label_values(&[&store]);
        let _ = self.store_regions.remove_label_values(&[&store]);
        for mode in ["multiplexed", "per_subscription"] {
            let _ = self.store_streams.remove_label_values(&[&store, mode]);
        }
    }
}
