//! TiDB tables by name as a change feed over a [`kvfeed::Client`]: [`Watcher`], the I/O around
//! `kvfeed-tidb`'s sans-IO [`Sequencer`]. It reads the schema at the start ts
//! (the meta keys, through snapshot reads), subscribes the DDL job table and the watched
//! tables' record spans, and follows the sequencer's subscription changes. It holds the
//! client's GC safe point at what it has released ([`GcHold`]), so that a table coming into view
//! can be subscribed from there.
//!
//! Each subscription is read by a task of its own, which forwards its events, tagged with their
//! [`Source`], into one channel the watcher drains; dropping a reader's task drops its
//! subscription (which unsubscribes it).

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use kvfeed::{Client, Event, GcHold, Op, RowEvent};
use kvfeed_span::table::table_span;
use kvfeed_span::{EncodedKey, Span};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use kvfeed_tidb::key::{self, DBS_KEY, DDL_JOB_TABLE_ID, MetaKey, SCHEMA_VERSION_KEY};
use kvfeed_tidb::schema::{DbInfo, TableInfo};
use kvfeed_tidb::{Catalog, Output, RawChange, Sequencer, Source};
pub use kvfeed_tidb::{DdlEvent, RowChange, TableEvent, TableName, Value};

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Why a [`Watcher`] could not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum WatchError {
    /// The client failed (PD or TiKV unreachable, a subscription failed).
    Client(kvfeed::Error),
    /// The schema or a row did not decode (the message names what and where).
    Decode(kvfeed_tidb::Error),
    /// A subscription ended without an error (the client was shut down).
    Ended,
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(error) => write!(f, "{error}"),
            Self::Decode(error) => write!(f, "{error}"),
            Self::Ended => f.write_str("a subscription ended (the client was shut down)"),
        }
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(error) => Some(error),
            Self::Decode(_) | Self::Ended => None,
        }
    }
}

impl From<kvfeed::Error> for WatchError {
    fn from(error: kvfeed::Error) -> Self {
        Self::Client(error)
    }
}

impl From<kvfeed_tidb::Error> for WatchError {
    fn from(error: kvfeed_tidb::Error) -> Self {
        Self::Decode(error)
    }
}

/// What a reader task forwards: an event of its subscription, or its end (`None`).
type Forwarded = (Source, Option<Result<Event, kvfeed::Error>>);

/// TiDB tables watched by name: decoded rows, DDL and resolved ts, in commit-ts order (the
/// order [`Sequencer`] gives). The client must be running ([`Client::run`]).
///
/// ```no_run
/// use kvfeed_tidb_watch::{TableEvent, TableName, Watcher};
///
/// # async fn watch(client: kvfeed::Client) -> Result<(), kvfeed_tidb_watch::WatchError> {
/// let start_ts = client.current_ts().await?;
/// let tables = [TableName::parse("shop.orders")?];
/// let mut watcher = Watcher::start(&client, &tables, start_ts).await?;
/// while let Some(event) = watcher.recv().await {
///     match event? {
///         TableEvent::Resolved(ts) => eprintln!("complete up to {ts}"),
///         event => println!("{}", event.to_json_line()),
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Watcher {
    client: Client,
    sequencer: Sequencer,
    /// The GC safe point held at what is released: a table that comes into view is
    /// subscribed from there, below the other subscriptions' checkpoints.
    gc_hold: GcHold,
    sender: mpsc::UnboundedSender<Forwarded>,
    receiver: mpsc::UnboundedReceiver<Forwarded>,
    readers: BTreeMap<Source, JoinHandle<()>>,
    ready: VecDeque<TableEvent>,
    failed: bool,
}

impl Watcher {
    /// Reads the schema at `start_ts` and subscribes `tables` (and the DDL job table) from
    /// it: the changes committed after `start_ts` follow. Fails when a table does not exist
    /// at `start_ts`, when the schema does not decode, or when the client fails.
    pub async fn start(
        client: &Client,
        tables: &[TableName],
        start_ts: u64,
    ) -> Result<Self, WatchError> {
        let gc_hold = client.hold_gc(start_ts).await?;
        let (catalog, job_table) = read_schema(client, start_ts).await?;
        let sequencer = Sequencer::new(catalog, job_table, tables, start_ts)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut watcher = Self {
            client: client.clone(),
            sequencer,
            gc_hold,
            sender,
            receiver,
            readers: BTreeMap::new(),
            ready: VecDeque::new(),
            failed: false,
        };
        watcher.subscribe(Source::Jobs, start_ts).await?;
        let initial: Vec<i64> =
            watcher.sequencer.initial_subscriptions().map(|(id, _)| id).collect();
        for id in initial {
            watcher.subscribe(Source::Table(id), start_ts).await?;
        }
        tracing::info!(?tables, start_ts, "watching TiDB tables");
        Ok(watcher)
    }

    /// The next event; `None` after an error was returned.
    pub async fn recv(&mut self) -> Option<Result<TableEvent, WatchError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.failed {
                return None;
            }
            // `self.sender` keeps the channel open: `None` cannot come.
            let (source, event) = self.receiver.recv().await?;
            let result = match event {
                Some(Ok(Event::Row(row))) => {
                    self.sequencer.push(source, raw_change(row));
                    Ok(())
                }
                Some(Ok(Event::Resolved(ts))) => {
                    self.sequencer.resolved(source, ts);
                    self.release().await
                }
                Some(Ok(_)) => Ok(()),
                // A source stopped a moment ago may still have sent its end: not ours any more.
                Some(Err(error)) if self.readers.contains_key(&source) => {
                    Err(WatchError::Client(error))
                }
                None if self.readers.contains_key(&source) => Err(WatchError::Ended),
                Some(Err(_)) | None => Ok(()),
            };
            if let Err(error) = result {
                self.failed = true;
                self.stop_readers();
                return Some(Err(error));
            }
        }
    }

    /// The resolved ts of everything delivered (or ready to be).
    pub fn resolved_ts(&self) -> u64 {
        self.sequencer.done()
    }

    /// The schema as of the last released event.
    pub fn catalog(&self) -> &Catalog {
        self.sequencer.catalog()
    }

    /// Raw changes waiting for every subscription's resolved ts to pass them.
    pub fn pending(&self) -> usize {
        self.sequencer.pending()
    }

    /// Lets the sequencer release what it can, and starts and stops subscriptions as it says.
    async fn release(&mut self) -> Result<(), WatchError> {
        let mut out = Vec::new();
        self.sequencer.advance(&mut out)?;
        if let Some(error) = self.gc_hold.lost() {
            return Err(WatchError::Client(error));
        }
        self.gc_hold.advance(self.sequencer.done());
        for output in out {
            match output {
                Output::Event(event) => self.ready.push_back(event),
                Output::Subscribe { physical_id, from_ts } => {
                    tracing::info!(physical_id, from_ts, "following a table under a new id");
                    self.subscribe(Source::Table(physical_id), from_ts).await?;
                }
                Output::Unsubscribe { physical_id } => {
                    if let Some(reader) = self.readers.remove(&Source::Table(physical_id)) {
                        reader.abort();
                    }
                }
            }
        }
        Ok(())
    }

    /// Subscribes a source's record span from `from_ts` and starts its reader.
    async fn subscribe(&mut self, source: Source, from_ts: u64) -> Result<(), WatchError> {
        let span = match source {
            Source::Jobs => table_span(DDL_JOB_TABLE_ID),
            Source::Table(id) => table_span(id),
        };
        let mut subscription = self.client.subscribe(span, from_ts).await?;
        // Its metrics carry the table's name.
        let name = match source {
            Source::Jobs => "mysql.tidb_ddl_job".to_owned(),
            Source::Table(id) => self
                .sequencer
                .watched_name(id)
                .map_or_else(|| format!("t{id}"), ToString::to_string),
        };
        self.client.name_subscription(subscription.id(), &name);
        let sender = self.sender.clone();
        let reader = tokio::spawn(async move {
            loop {
                let event = subscription.recv().await;
                let end = !matches!(event, Some(Ok(_)));
                if sender.send((source, event)).is_err() || end {
                    return;
                }
            }
        });
        if let Some(old) = self.readers.insert(source, reader) {
            old.abort();
        }
        Ok(())
    }

    fn stop_readers(&mut self) {
        for (_, reader) in std::mem::take(&mut self.readers) {
            reader.abort();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop_readers();
    }
}

fn raw_change(row: RowEvent) -> RawChange {
    RawChange {
        delete: row.op == Op::Delete,
        key: row.key.to_vec(),
        value: row.value.to_vec(),
        old_value: row.old_value.map(|v| v.to_vec()),
        start_ts: row.start_ts,
        commit_ts: row.commit_ts,
    }
}

/// Every field of the meta hash `name` as of `ts`: `(field, value)`.
async fn hash_fields(
    client: &Client,
    name: &[u8],
    ts: u64,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, WatchError> {
    let (start, end) = key::hash_range(name);
    let span = Span::new(EncodedKey::encode(&start), EncodedKey::encode(&end))
        .map_err(|e| kvfeed_tidb::Error::Schema(format!("meta range: {e:?}")))?;
    let mut snapshot = client.snapshot(span, ts).await?;
    let mut out = Vec::new();
    while let Some(row) = snapshot.recv().await {
        let row = row?;
        if let MetaKey::HashField { field, .. } = MetaKey::decode(&row.key)? {
            out.push((field, row.value.to_vec()));
        }
    }
    Ok(out)
}

/// The schema as of `ts` from TiDB's meta keys: the catalog and `mysql.tidb_ddl_job`'s
/// TableInfo (when the cluster has one).
pub async fn read_schema(
    client: &Client,
    ts: u64,
) -> Result<(Catalog, Option<TableInfo>), WatchError> {
    let version_key = MetaKey::String { key: SCHEMA_VERSION_KEY.into() }.encode();
    let version = match client.get(&version_key, ts).await? {
        Some(bytes) => {
            std::str::from_utf8(&bytes).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
                kvfeed_tidb::Error::Schema(format!("schema version {:?} is not a number", bytes))
            })?
        }
        None => 0,
    };
    let mut dbs = Vec::new();
    let mut tables = Vec::new();
    let mut job_table = None;
    for (field, value) in hash_fields(client, DBS_KEY, ts).await? {
        if key::parse_db_key(&field).is_none() {
            continue;
        }
        let db = DbInfo::from_json(&value)?;
        for (field, value) in hash_fields(client, &key::db_key(db.id), ts).await? {
            if key::parse_table_field(&field).is_none() {
                continue;
            }
            let table = TableInfo::from_json(&value)?;
            if db.db_name.l == "mysql" && table.name.l == "tidb_ddl_job" {
                job_table = Some(table.clone());
            }
            tables.push((db.id, table));
        }
        dbs.push(db);
    }
    let names: Vec<String> = dbs.iter().map(|d| d.db_name.o.clone()).collect();
    tracing::debug!(version, ?names, tables = tables.len(), "read the TiDB schema");
    Ok((Catalog::from_snapshot(version, dbs, tables)?, job_table))
}
