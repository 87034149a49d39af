//! [`DecodedWatcher`]: the reader of a [`kvfeed_tidb_watch::Watcher`] in `kvfeed demo` and the chaos
//! runs: it logs every event as the JSON line `watch --table db.tbl` prints, for the
//! simulator's TiDB verifier ([`kvfeed_sim::verify_tidb`]), and keeps the counters and the last
//! line per table that the progress display shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvfeed_base::lock;
use kvfeed_sim::{TidbReport, verify_tidb};
use kvfeed_tidb_watch::{TableEvent, Watcher};
use tokio::task::JoinHandle;

/// One decoded watch's reader and log.
#[derive(Debug)]
pub struct DecodedWatcher {
    /// The tables watched, as `db.table`.
    pub tables: Vec<String>,
    /// The start ts.
    pub start_ts: u64,
    rows: AtomicU64,
    ddl: AtomicU64,
    resolved: AtomicU64,
    lines: Mutex<Vec<serde_json::Value>>,
    /// The last row line per table.
    samples: Mutex<BTreeMap<String, String>>,
    failure: Mutex<Option<String>>,
}

impl DecodedWatcher {
    /// Starts reading `watcher` (of `tables` from `start_ts`) in a task that ends with it.
    pub fn spawn(
        mut watcher: Watcher,
        tables: Vec<String>,
        start_ts: u64,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let this = Arc::new(Self {
            tables,
            start_ts,
            rows: AtomicU64::new(0),
            ddl: AtomicU64::new(0),
            resolved: AtomicU64::new(start_ts),
            lines: Mutex::default(),
            samples: Mutex::default(),
            failure: Mutex::default(),
        });
        let reader = Arc::clone(&this);
        let task = tokio::spawn(async move {
            while let Some(event) = watcher.recv().await {
                match event {
                    Ok(event) => reader.record(&event),
                    Err(error) => *lock(&reader.failure) = Some(error.to_string()),
                }
            }
        });
        (this, task)
    }

    fn record(&self, event: &TableEvent) {
        let line = event.to_json_line();
        match event {
            TableEvent::Resolved(ts) => self.resolved.store(*ts, Ordering::Release),
            TableEvent::Ddl(_) => {
                self.ddl.fetch_add(1, Ordering::Relaxed);
            }
            TableEvent::Insert(row) | TableEvent::Update(row) | TableEvent::Delete(row) => {
                self.rows.fetch_add(1, Ordering::Relaxed);
                lock(&self.samples).insert(row.table.to_string(), line.clone());
            }
            _ => {}
        }
        match serde_json::from_str(&line) {
            Ok(value) => lock(&self.lines).push(value),
            Err(error) => *lock(&self.failure) = Some(format!("not JSON ({error}): {line}")),
        }
    }

    /// Row events received.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// DDL events received.
    pub fn ddl(&self) -> u64 {
        self.ddl.load(Ordering::Relaxed)
    }

    /// The last resolved ts (the start ts before the first).
    pub fn resolved(&self) -> u64 {
        self.resolved.load(Ordering::Acquire)
    }

    /// The error the watch failed with, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// The last row line of `table`, if one came.
    pub fn sample(&self, table: &str) -> Option<String> {
        lock(&self.samples).get(table).cloned()
    }

    /// The verifier's report on the log against the events the workload wrote.
    pub fn report(&self, expected: &[serde_json::Value]) -> TidbReport {
        verify_tidb(expected, &self.tables, self.start_ts, &lock(&self.lines))
    }
}
