//! How a [`Client`](crate::Client) connects and behaves: [`Config`], with the production
//! defaults of TiCDC where it has them. TLS settings are [`kvfeed_base::TlsConfig`], re-exported
//! as [`crate::TlsConfig`]: one type for PD and the stores.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use kvfeed_base::{Backoff, TlsConfig};

use crate::error::Error;
use crate::version::TikvVersion;

/// The client's settings. [`Config::new`] gives the defaults; change fields before
/// [`Client::connect`](crate::Client::connect). New fields may come in any release (with
/// defaults), so the type is built only through [`Config::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// PD endpoints, `host:port` or `http(s)://host:port`; the other members PD reports are
    /// tried too.
    pub pd_endpoints: Vec<String>,
    /// The cluster id to expect; `None` takes the id of the first PD that answers.
    pub cluster_id: Option<u64>,
    /// Region workers: every region is pinned to one by a hash of its id. At least 1.
    pub worker_count: usize,
    /// Multiplexed gRPC streams per store. At least 1.
    pub streams_per_store: usize,
    /// A subscription's resolved ts is published at most once per interval (and at the end of
    /// every interval in which it advanced).
    pub advance_interval: Duration,
    /// Regions per store whose incremental scan may run at once; the others wait their turn,
    /// so one large subscription cannot starve the rest. At least 1.
    pub initial_scan_window: usize,
    /// Bytes the client may hold on the way, over all subscriptions, in three parts: events
    /// decoded from TiKV, waiting for a region worker or being handled by one (an eighth);
    /// prewrites waiting for their commits, with the commits and rollbacks a region caches
    /// during its incremental scan (a quarter); rows delivered but not yet read by subscribers
    /// (the rest). When the first or the last part is full, reading from TiKV stops (HTTP/2
    /// flow control pushes back on the stores) until it drains. Past the prewrite part, the
    /// values of further prewrites go to disk ([`spill_dir`](Self::spill_dir)) and are read
    /// back at their commits; their keys and bookkeeping (about a hundred bytes a row) stay in
    /// memory and are counted. With spilling off, prewrites are held in memory past their part,
    /// however large a transaction is.
    ///
    /// The quota is shared: a subscriber that stops reading one subscription while it waits
    /// for another can fill it, and then every region worker waits, the other subscription's
    /// too. Read every subscription (a task each, or `select!` over them), or give each
    /// subscription a quota of its own ([`subscription_quota`](Self::subscription_quota)).
    pub memory_quota: usize,
    /// Bytes of delivered rows each subscription may hold unread, within the quota's part for
    /// delivered rows. A region with rows for a subscription at its limit does not wait (which
    /// would hold up every subscription of its worker): it is deregistered and read again from
    /// its checkpoint once at most half the subscription's quota is in use (TiKV scans it
    /// again, and rows above the checkpoint delivered before may come again). This keeps a
    /// subscriber that reads its subscriptions one at a time from stalling them all; `None`
    /// (the default) leaves every subscription to the shared quota.
    ///
    /// The limit is soft: a batch (at most a quarter of this quota, and at most 4 MiB) is
    /// delivered whole when the subscription is below its limit, so the unread bytes stay
    /// under the limit plus one batch per region worker. The shared quota is never exceeded.
    pub subscription_quota: Option<usize>,
    /// Deliver each row `(key, commit ts)` of a subscription once (default on). A region read
    /// again from its checkpoint (after an error, a split, a merge, a leader move, a full
    /// subscription quota) gets every row committed above the checkpoint again from TiKV; with
    /// this on, the subscription remembers the rows it delivered above its published resolved
    /// ts and drops the repeats, so delivery is exactly once within a subscription. The record
    /// holds about 100 bytes plus the key per row of the unresolved window, counted in the
    /// memory quota's prewrite part. Off: at least once, with no record.
    ///
    /// Across a restart: a subscription from a checkpoint (the last resolved ts read, see
    /// [`Subscription::checkpoint`](crate::Subscription::checkpoint)) delivers every row
    /// committed above it once, and none at or below it; rows above the checkpoint that the
    /// previous process delivered come again.
    pub exactly_once: bool,
    /// Where prewrite values past the memory quota's prewrite part are kept until their
    /// commits: anonymous temporary files (removed by the system as they are closed, also when
    /// the process dies), created in this directory, which must exist and be writable. `None`
    /// turns spilling off. The default is the system's temporary directory: where that is a
    /// memory file system (tmpfs, as `/tmp` is on many distributions), spilled values are
    /// still in memory, so point this at a disk.
    pub spill_dir: Option<PathBuf>,
    /// Ask TiKV to drop rows written by change-data replication itself (bidirectional setups).
    pub filter_loop: bool,
    /// TLS to PD and the stores; plain text when `None`.
    pub tls: Option<TlsConfig>,
    /// Concurrent range tasks (each loads the regions of a range from PD and locks them).
    pub range_concurrency: usize,
    /// Regions asked of PD per call.
    pub region_scan_limit: usize,
    /// Keys per `KvScan` page of a snapshot read ([`Client::snapshot`](crate::Client::snapshot)).
    /// At least 1.
    pub snapshot_page_size: u32,
    /// Snapshot pages asked of one store at once (per snapshot). At least 1.
    pub snapshot_store_concurrency: usize,
    /// Backoff bounds for requesting a region again after any failure (busy, congested, not
    /// leader, stream, epoch, region not found, unknown errors; jittered, doubling per
    /// consecutive failure of the region). The count survives reloads and completed scans and
    /// starts again only after the region went 30 s without a failure; a `ServerIsBusy` backoff
    /// hint from TiKV is honoured up to `max`.
    pub region_backoff: Backoff,
    /// A region whose rows cannot be interpreted (an unknown row type or operation, a commit
    /// not after its start, ...) is requested again, up to this many times in a row; then its
    /// subscription fails with [`Error::BadRow`](crate::Error::BadRow). At least 1.
    pub bad_row_attempts: u32,
    /// A region whose incremental scan has not ended this long after its registration (a
    /// wedged store that accepted the register and sends nothing) is deregistered and requested
    /// again, giving back its place in the store's initial-scan window; `None` waits forever.
    pub region_stuck_timeout: Option<Duration>,
    /// Locks are resolved automatically in regions whose resolved ts lags PD's clock by more
    /// than this; `None` turns the automatic trigger off ([`Client::resolve_lock`] still
    /// works).
    ///
    /// [`Client::resolve_lock`]: crate::Client::resolve_lock
    pub lock_resolve_fence: Option<Duration>,
    /// A region's locks are resolved at most once per cooldown.
    pub lock_resolve_cooldown: Duration,
    /// Lock-resolution tasks waiting at most; further requests are refused until there is room.
    pub lock_resolve_queue: usize,
    /// How often slow regions and holes are reported (logged, and counted in the slow-region
    /// gauge).
    pub slow_region_interval: Duration,
    /// A region counts as slow when its resolved ts lags PD's clock by more than this.
    pub slow_region_lag: Duration,
    /// The name of the client's PD service GC safe point (`kvfeed-NAME`): held at the lowest
    /// checkpoint of its subscriptions so that TiKV keeps the history they need. Two clients
    /// with the same name share one safe point (the later update wins), so give each its own, or
    /// the same one to a restarted process that takes over from its predecessor; `None` makes a
    /// name unique to the client.
    pub gc_service_name: Option<String>,
    /// The TTL of the service safe point: after a crash, GC is held back this long at most.
    pub gc_ttl: Duration,
    /// Leave the service safe point in place at shutdown (to expire with its TTL) instead of
    /// removing it: a process restarted within the TTL under the same
    /// [`gc_service_name`](Self::gc_service_name) resumes from its checkpoint with the history
    /// still there, after a planned stop as after a crash. Off by default.
    pub gc_keep_on_shutdown: bool,
    /// How often the service safe point is refreshed (advanced to the lowest checkpoint); well
    /// below `gc_ttl`.
    pub gc_refresh: Duration,
    /// The deadline of one PD call and of dialling a store.
    pub timeout: Duration,
    /// The TiKV versions the client talks to (as PD reports them per store; the end excluded).
    /// A region whose leader is on a store outside the range (too old, or mid-way through a
    /// rolling upgrade) stays locked and is requested again, with backoff, until the store's
    /// version is in range; `None` talks to any store.
    pub store_versions: Option<Range<TikvVersion>>,
}

impl Config {
    /// The defaults for a cluster reached through `pd_endpoints`: 8 workers, 2 streams per store,
    /// 300 ms advance interval, 32 initial scans per store, a 1 GiB memory quota (as TiCDC's
    /// per-changefeed default) with huge transactions spilled to the system's temporary
    /// directory, no TLS,
    /// automatic lock resolution beyond 20 s of lag with a 10 s cooldown, a GC safe point with a
    /// 1 h TTL refreshed every minute, stores of versions from 7.1.0-alpha up to 10.0.0
    /// (excluded), as TiCDC.
    pub fn new<S: Into<String>>(pd_endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            pd_endpoints: pd_endpoints.into_iter().map(Into::into).collect(),
            cluster_id: None,
            worker_count: 8,
            streams_per_store: 2,
            advance_interval: Duration::from_millis(300),
            initial_scan_window: 32,
            memory_quota: 1 << 30,
            spill_dir: Some(std::env::temp_dir()),
            exactly_once: true,
            subscription_quota: None,
            filter_loop: false,
            tls: None,
            range_concurrency: 64,
            region_scan_limit: 1024,
            snapshot_page_size: 1024,
            snapshot_store_concurrency: 3,
            region_backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
            bad_row_attempts: 3,
            region_stuck_timeout: Some(Duration::from_secs(60)),
            lock_resolve_fence: Some(Duration::from_secs(20)),
            lock_resolve_cooldown: Duration::from_secs(10),
            lock_resolve_queue: 4096,
            slow_region_interval: Duration::from_secs(30),
            slow_region_lag: Duration::from_secs(20),
            gc_service_name: None,
            gc_ttl: Duration::from_secs(3600),
            gc_keep_on_shutdown: false,
            gc_refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(3),
            store_versions: Some(
                TikvVersion::new(7, 1, 0).with_pre_release("alpha")..TikvVersion::new(10, 0, 0),
            ),
        }
    }
}

/// The part of [`Config::memory_quota`] for events waiting in the transport's queue: an
/// eighth, at least 1 byte.
pub(crate) fn queue_bytes(memory_quota: usize) -> usize {
    (memory_quota / 8).max(1)
}

/// The part of [`Config::memory_quota`] for prewrites and the rows cached during incremental
/// scans: a quarter.
pub(crate) fn prewrite_bytes(memory_quota: usize) -> usize {
    memory_quota / 4
}

/// The part of [`Config::memory_quota`] for delivered rows not yet read: what the queue and the
/// prewrites leave, at least 1 byte.
pub(crate) fn delivered_bytes(memory_quota: usize) -> usize {
    memory_quota.saturating_sub(queue_bytes(memory_quota) + prewrite_bytes(memory_quota)).max(1)
}

/// The bytes a worker gathers into one delivered batch before handing it over (a frame's rows
/// of one region are sliced at this size): 4 MiB, a sixteenth of the delivered part, or a
/// quarter of a subscription's own quota, whichever is least. So a COMMIT of many spilled
/// values is read back a slice at a time, and a subscription's soft quota is overshot by
/// little.
pub(crate) fn batch_bytes(config: &Config) -> usize {
    let own = config.subscription_quota.map_or(usize::MAX, |quota| quota / 4);
    (4 << 20).min(delivered_bytes(config.memory_quota) / 16).min(own).max(1)
}

/// Checks the settings a client cannot work with.
pub(crate) fn validate(config: &Config) -> Result<(), Error> {
    let positive = [
        ("worker_count", config.worker_count),
        ("streams_per_store", config.streams_per_store),
        ("initial_scan_window", config.initial_scan_window),
        ("memory_quota", config.memory_quota),
        ("range_concurrency", config.range_concurrency),
        ("region_scan_limit", config.region_scan_limit),
        ("snapshot_page_size", config.snapshot_page_size as usize),
        ("snapshot_store_concurrency", config.snapshot_store_concurrency),
        ("lock_resolve_queue", config.lock_resolve_queue),
        ("bad_row_attempts", config.bad_row_attempts as usize),
    ];
    for (name, value) in positive {
        if value == 0 {
            return Err(Error::Config(format!("{name} must be at least 1")));
        }
    }
    if config.pd_endpoints.is_empty() {
        return Err(Error::Config("no PD endpoint".to_owned()));
    }
    if config.memory_quota < 8 {
        // Both parts (see `queue_bytes`) need a byte.
        return Err(Error::Config("memory_quota must be at least 8 bytes".to_owned()));
    }
    if config.memory_quota > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(Error::Config("memory_quota is too large".to_owned()));
    }
    if config.region_stuck_timeout.is_some_and(|timeout| timeout.is_zero()) {
        return Err(Error::Config("region_stuck_timeout must be positive".to_owned()));
    }
    if config.gc_ttl < Duration::from_secs(1) {
        return Err(Error::Config("gc_ttl must be at least 1 s".to_owned()));
    }
    if config.gc_refresh.is_zero() || config.gc_refresh >= config.gc_ttl {
        return Err(Error::Config("gc_refresh must be positive and below gc_ttl".to_owned()));
    }
    if config.gc_service_name.as_ref().is_some_and(String::is_empty) {
        return Err(Error::Config("gc_service_name must not be empty".to_owned()));
    }
    if let Some(quota) = config.subscription_quota
        && !(1..=delivered_bytes(config.memory_quota)).contains(&quota)
    {
        return Err(Error::Config(format!(
            "subscription_quota must be between 1 byte and the quota's part for delivered rows \
             ({} bytes)",
            delivered_bytes(config.memory_quota)
        )));
    }
    if let Some(dir) = &config.spill_dir {
        // Try now: an unusable directory is a configuration error here, not a warning in the
        // middle of a huge transaction.
        tempfile::tempfile_in(dir).map_err(|error| {
            Error::Config(format!("spill_dir {} cannot hold files: {error}", dir.display()))
        })?;
    }
    if config.advance_interval.is_zero() {
        return Err(Error::Config("advance_interval must be positive".to_owned()));
    }
    if let Some(tls) = &config.tls {
        // Read the files now: a missing or unreadable one is a configuration error here, not a
        // connection failure later.
        tls.check().map_err(|error| Error::Config(error.to_string()))?;
    }
    if let Some(versions) = &config.store_versions
        && versions.is_empty()
    {
        return Err(Error::Config(format!(
            "store_versions {}..{} admits no version",
            versions.start, versions.end
        )));
    }
    Ok(())
}
