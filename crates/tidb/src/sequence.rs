//! [`Sequencer`]: a TiDB change feed's ordering core, sans-IO. It takes the raw rows of the
//! watched tables' record spans and of the DDL job table, each source's resolved ts, and gives
//! [`TableEvent`]s in commit-ts order: rows decoded by the schema valid at their commit ts, DDL
//! events between them, and the resolved ts. It also says which physical tables to subscribe
//! and unsubscribe as DDL moves the watched names (truncate, re-create, rename, partitions).
//!
//! Order (what a consumer may rely on): events come sorted by commit ts; at one commit ts rows
//! come before the DDL (a row committed at a DDL's finish ts was written under the schema before
//! it, see [`Catalog`]); rows of one commit ts come by physical table and key. Each
//! `(physical table, key, commit ts)` comes once even when a source delivers it twice. After
//! [`TableEvent::Resolved`]`(ts)`, nothing at or below `ts` follows.
//!
//! How: items wait in `pending`, sorted by that order, until the frontier (the minimum resolved
//! ts over every source) passes them. A DDL that brings a new physical table into view stops the
//! pass at its ts: the new table is subscribed from that ts, and nothing later is released until
//! its subscription has resolved past it, so none of its rows can come out of order.
//!
//! Invariants: `done` (everything at or below it is released) never decreases and is at most
//! the frontier; `names` holds exactly the physical ids of the watched names as of `done`, and
//! `sources` holds those and [`Source::Jobs`].

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::key::{DDL_JOB_TABLE_ID, strip_keyspace};
use crate::render::{self, Kind};
use crate::schema::{CiStr, ColumnInfo, FieldType, Job, TableInfo, flag, state, tp};
use crate::{Catalog, Error, RecordKey, Row, RowDecoder, SchemaChange, Value};

/// A table as users name it: `db.table`, compared in lowercase as TiDB does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The database.
    pub db: String,
    /// The table.
    pub table: String,
}

impl TableName {
    /// A name from its parts.
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        Self { db: db.into(), table: table.into() }
    }

    /// Parses `db.table` (either part may be quoted with backticks, to hold a dot).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad =
            || Error::Schema(alloc::format!("{text:?} is not a table name of the form db.table"));
        let (db, rest) = split_part(text).ok_or_else(bad)?;
        let rest = rest.strip_prefix('.').ok_or_else(bad)?;
        let (table, tail) = split_part(rest).ok_or_else(bad)?;
        if !tail.is_empty() || db.is_empty() || table.is_empty() {
            return Err(bad());
        }
        Ok(Self::new(db, table))
    }

    /// Whether this name is `db`.`table` (case-insensitively).
    fn is(&self, db: &str, table: &str) -> bool {
        self.db.to_lowercase() == db.to_lowercase()
            && self.table.to_lowercase() == table.to_lowercase()
    }
}

/// The first part of a dotted name: up to the first dot, or a backtick-quoted part.
fn split_part(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('`') {
        let end = quoted.find('`')?;
        return Some((quoted[..end].to_string(), &quoted[end + 1..]));
    }
    let end = text.find('.').unwrap_or(text.len());
    Some((text[..end].to_string(), &text[end..]))
}

impl core::fmt::Display for TableName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// One decoded change of one row.
#[derive(Clone, Debug)]
pub struct RowChange {
    /// The table, by the watched name it has at the change.
    pub table: Arc<TableName>,
    /// The physical table (the table's id, or the partition's).
    pub physical_id: i64,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Its commit ts.
    pub commit_ts: u64,
    /// The row before (updates and deletes; for a delete without an old value, only the
    /// columns its key holds).
    pub before: Option<Row>,
    /// The row after (inserts and updates).
    pub after: Option<Row>,
    /// The schema both rows are decoded by: their columns' names and types.
    pub schema: Arc<RowDecoder>,
}

impl RowChange {
    /// The value of column `name` (case-insensitive) in `row`.
    pub fn value<'a>(&'a self, row: &'a Row, name: &str) -> Option<&'a Value> {
        let name = name.to_lowercase();
        let i = self.schema.columns().position(|c| c.name.l == name)?;
        row.get(i)
    }
}

/// A schema change of a watched table.
#[derive(Clone, Debug)]
pub struct DdlEvent {
    /// The watched name it concerns (for a rename, each of the old and the new name that is
    /// watched gets one).
    pub table: Arc<TableName>,
    /// When it took effect: the commit ts of its job row.
    pub commit_ts: u64,
    /// The statement.
    pub query: String,
    /// What the job changed.
    pub change: SchemaChange,
}

/// What a TiDB change feed delivers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TableEvent {
    /// A new row (`after` set).
    Insert(RowChange),
    /// A changed row (`before` and `after` set).
    Update(RowChange),
    /// A removed row (`before` set).
    Delete(RowChange),
    /// A schema change.
    Ddl(DdlEvent),
    /// Every event at or below this ts has been delivered.
    Resolved(u64),
}

impl TableEvent {
    /// The event's commit ts (the ts itself for [`TableEvent::Resolved`]).
    pub fn commit_ts(&self) -> u64 {
        match self {
            Self::Insert(row) | Self::Update(row) | Self::Delete(row) => row.commit_ts,
            Self::Ddl(ddl) => ddl.commit_ts,
            Self::Resolved(ts) => *ts,
        }
    }

    /// The event as one JSON line (without the newline), in `kvfeed watch --table db.tbl`'s
    /// format ([`render`]).
    pub fn to_json_line(&self) -> String {
        let row_line = |kind: Kind, row: &RowChange| {
            render::event_line(
                kind,
                &row.table.to_string(),
                Some(row.commit_ts),
                &row.schema,
                row.before.as_ref(),
                row.after.as_ref(),
            )
        };
        match self {
            Self::Insert(row) => row_line(Kind::Insert, row),
            Self::Update(row) => row_line(Kind::Update, row),
            Self::Delete(row) => row_line(Kind::Delete, row),
            Self::Ddl(ddl) => render::ddl_line(&ddl.table.to_string(), ddl.commit_ts, &ddl.query),
            Self::Resolved(ts) => alloc::format!("{{\"kind\":\"resolved\",\"ts\":{ts}}}"),
        }
    }
}

/// Where a raw change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The DDL job table's record span.
    Jobs,
    /// A physical table's record span.
    Table(i64),
}

/// A raw committed change as a subscription delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChange {
    /// Whether the key was deleted (else put).
    pub delete: bool,
    /// The raw key.
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
    /// The value before the transaction, if the key had one.
    pub old_value: Option<Vec<u8>>,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// Its commit ts.
    pub commit_ts: u64,
}

/// What the sequencer gives: an event, or a subscription to start or stop.
#[derive(Clone, Debug)]
pub enum Output {
    /// The next event.
    Event(TableEvent),
    /// Subscribe this physical table's record span from this ts.
    Subscribe {
        /// The physical table.
        physical_id: i64,
        /// The ts to subscribe from (changes after it).
        from_ts: u64,
    },
    /// Stop this physical table's subscription: no watched name holds it any more.
    Unsubscribe {
        /// The physical table.
        physical_id: i64,
    },
}

/// The sort order of waiting items: commit ts, rank ([`ROW`] before [`JOB`]), physical id, key.
type Order = (u64, u8, i64, Vec<u8>);
/// The rank of a row change.
const ROW: u8 = 0;
/// The rank of a job row: after the rows of its commit ts.
const JOB: u8 = 1;

/// Orders a TiDB change feed (see the module documentation).
#[derive(Debug)]
pub struct Sequencer {
    catalog: Catalog,
    watched: Vec<Arc<TableName>>,
    /// Physical id -> the watched name holding it, as of `done`.
    names: BTreeMap<i64, Arc<TableName>>,
    /// Resolved ts per source.
    sources: BTreeMap<Source, u64>,
    pending: BTreeMap<Order, RawChange>,
    job_decoder: RowDecoder,
    job_meta: usize,
    done: u64,
    resolved_sent: u64,
}

impl Sequencer {
    /// A sequencer of `tables` from `start_ts`, over `catalog` (the meta snapshot at
    /// `start_ts`). `job_table` is `mysql.tidb_ddl_job`'s TableInfo from the same snapshot
    /// (`None`: the layout TiDB v6.2+ creates it with). Fails when a table does not exist at
    /// `start_ts`. [`initial_subscriptions`](Self::initial_subscriptions) says what to
    /// subscribe: every one from `start_ts`, and the job table's span ([`Source::Jobs`]).
    pub fn new(
        catalog: Catalog,
        job_table: Option<TableInfo>,
        tables: &[TableName],
        start_ts: u64,
    ) -> Result<Self, Error> {
        let job_decoder = RowDecoder::new(job_table.unwrap_or_else(ddl_job_table))?;
        let job_meta = job_decoder
            .columns()
            .position(|c| c.name.l == "job_meta")
            .ok_or_else(|| Error::Schema("mysql.tidb_ddl_job has no job_meta column".into()))?;
        let mut watched: Vec<Arc<TableName>> = Vec::new();
        for name in tables {
            if !watched.iter().any(|w| w.is(&name.db, &name.table)) {
                watched.push(Arc::new(name.clone()));
            }
        }
        let mut sequencer = Self {
            catalog,
            watched,
            names: BTreeMap::new(),
            sources: BTreeMap::new(),
            pending: BTreeMap::new(),
            job_decoder,
            job_meta,
            done: start_ts,
            resolved_sent: start_ts,
        };
        for name in &sequencer.watched {
            if sequencer.catalog.table_by_name(&name.db, &name.table).is_none() {
                return Err(Error::Schema(alloc::format!(
                    "table {name} does not exist at ts {start_ts}"
                )));
            }
        }
        sequencer.names = sequencer.resolve();
        sequencer.sources.insert(Source::Jobs, start_ts);
        for id in sequencer.names.keys() {
            sequencer.sources.insert(Source::Table(*id), start_ts);
        }
        Ok(sequencer)
    }

    /// The physical tables to subscribe at the start, with the names holding them.
    pub fn initial_subscriptions(&self) -> impl Iterator<Item = (i64, &TableName)> + '_ {
        self.names.iter().map(|(id, name)| (*id, &**name))
    }

    /// The watched name holding a physical table, as of the last released event (and of a
    /// [`Output::Subscribe`] just returned).
    pub fn watched_name(&self, physical_id: i64) -> Option<&TableName> {
        self.names.get(&physical_id).map(|name| &**name)
    }

    /// The catalog, as of the last released event.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The ts up to which every event is released.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// How many raw changes wait for the frontier.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a raw change from `source`. Changes at or below what is released (a source
    /// delivering one again) and of sources not subscribed are dropped.
    pub fn push(&mut self, source: Source, change: RawChange) {
        if change.commit_ts <= self.done || !self.sources.contains_key(&source) {
            return;
        }
        let order = match source {
            // Deleting a job row moves the job to history: nothing to apply.
            Source::Jobs if change.delete => return,
            Source::Jobs => (change.commit_ts, JOB, 0, change.key.clone()),
            Source::Table(id) => (change.commit_ts, ROW, id, change.key.clone()),
        };
        self.pending.insert(order, change);
    }

    /// Takes `source`'s resolved ts (a value at or below the one held is ignored).
    pub fn resolved(&mut self, source: Source, ts: u64) {
        if let Some(held) = self.sources.get_mut(&source) {
            *held = (*held).max(ts);
        }
    }

    /// The minimum resolved ts over every source.
    pub fn frontier(&self) -> u64 {
        self.sources.values().copied().min().unwrap_or(self.done)
    }

    /// Releases what the frontier allows into `out`: events, then the resolved ts, and the
    /// subscriptions to start or stop. An error (a row or a job that does not decode by its
    /// schema) names the change; the sequencer should not be used after one.
    pub fn advance(&mut self, out: &mut Vec<Output>) -> Result<(), Error> {
        let frontier = self.frontier();
        // Set by a job that brings a table into view: the rest of its ts still goes out.
        let mut stopped_at: Option<u64> = None;
        while let Some(entry) = self.pending.first_entry() {
            let ts = entry.key().0;
            if ts > frontier || stopped_at.is_some_and(|stop| ts > stop) {
                break;
            }
            let ((commit_ts, rank, _, _), change) = entry.remove_entry();
            if rank == JOB {
                if self.apply_job(&change, out)? {
                    stopped_at = Some(commit_ts);
                }
            } else if let Some(event) = self.decode_row(&change)? {
                out.push(Output::Event(event));
            }
        }
        self.done = stopped_at.unwrap_or(frontier).max(self.done);
        if self.done > self.resolved_sent {
            self.resolved_sent = self.done;
            out.push(Output::Event(TableEvent::Resolved(self.done)));
            self.catalog.forget_before(self.done);
        }
        Ok(())
    }

    /// Decodes a job row and applies the job; returns whether a new physical table came into
    /// view (the pass must stop at its ts).
    fn apply_job(&mut self, change: &RawChange, out: &mut Vec<Output>) -> Result<bool, Error> {
        let at = |e: Error| {
            Error::Schema(alloc::format!("DDL job row at commit ts {}: {e}", change.commit_ts))
        };
        let key = RecordKey::decode(strip_keyspace(&change.key)).map_err(at)?;
        let Some(row) = self.job_decoder.decode(&key, &change.value).map_err(at)? else {
            return Ok(false);
        };
        let meta = match row.get(self.job_meta) {
            Some(Value::Bytes(bytes)) => bytes.as_slice(),
            Some(Value::Text(text)) => text.as_bytes(),
            _ => return Err(at(Error::Schema("job_meta is not a byte string".into()))),
        };
        let job = Job::from_json(meta).map_err(at)?;
        let Some(change_done) = self.catalog.apply(&job, change.commit_ts).map_err(at)? else {
            return Ok(false);
        };
        let before = core::mem::take(&mut self.names);
        let after = self.resolve();
        for name in &self.watched {
            let held_before: BTreeSet<i64> =
                before.iter().filter(|(_, n)| *n == name).map(|(id, _)| *id).collect();
            let held_after: BTreeSet<i64> =
                after.iter().filter(|(_, n)| *n == name).map(|(id, _)| *id).collect();
            let touches = |id: &i64| held_before.contains(id) || held_after.contains(id);
            // A name moved (truncate, rename, re-create, partitions), or its table changed.
            let involved = held_before != held_after
                || change_done.physical_ids.iter().any(touches)
                || touches(&job.table_id);
            if involved {
                out.push(Output::Event(TableEvent::Ddl(DdlEvent {
                    table: Arc::clone(name),
                    commit_ts: change.commit_ts,
                    query: job.query.clone(),
                    change: change_done.clone(),
                })));
            }
        }
        let mut new_in_view = false;
        for id in before.keys().filter(|id| !after.contains_key(id)) {
            self.sources.remove(&Source::Table(*id));
            self.pending.retain(|order, _| order.2 != *id || order.1 != ROW);
            out.push(Output::Unsubscribe { physical_id: *id });
        }
        for id in after.keys().filter(|id| !before.contains_key(id)) {
            self.sources.insert(Source::Table(*id), change.commit_ts);
            out.push(Output::Subscribe { physical_id: *id, from_ts: change.commit_ts });
            new_in_view = true;
        }
        self.names = after;
        Ok(new_in_view)
    }

    /// Decodes a row change of a watched physical table; `None` when its table did not exist
    /// at the change (TiCDC skips those too).
    fn decode_row(&self, change: &RawChange) -> Result<Option<TableEvent>, Error> {
        let Some(id) = kvfeed_span::table::table_id_of(strip_keyspace(&change.key)) else {
            return Ok(None);
        };
        let Some(name) = self.names.get(&id) else { return Ok(None) };
        let Some(schema) = self.catalog.decoder_at(id, change.commit_ts) else { return Ok(None) };
        let at = |e: Error| {
            Error::Schema(alloc::format!(
                "row of {name} (table {id}) at commit ts {}: {e}",
                change.commit_ts
            ))
        };
        let key = RecordKey::decode(strip_keyspace(&change.key)).map_err(at)?;
        let before = match &change.old_value {
            Some(old) => schema.decode(&key, old).map_err(at)?,
            None => None,
        };
        let row = |before, after| RowChange {
            table: Arc::clone(name),
            physical_id: id,
            start_ts: change.start_ts,
            commit_ts: change.commit_ts,
            before,
            after,
            schema: Arc::clone(schema),
        };
        Ok(Some(if change.delete {
            let before = match before {
                Some(before) => before,
                None => schema.decode_key(&key).map_err(at)?,
            };
            TableEvent::Delete(row(Some(before), None))
        } else {
            let Some(after) = schema.decode(&key, &change.value).map_err(at)? else {
                return Ok(None);
            };
            match before {
                Some(before) => TableEvent::Update(row(Some(before), Some(after))),
                None => TableEvent::Insert(row(None, Some(after))),
            }
        }))
    }

    /// The physical ids every watched name holds in the current catalog.
    fn resolve(&self) -> BTreeMap<i64, Arc<TableName>> {
        let mut names = BTreeMap::new();
        for name in &self.watched {
            let table = self.catalog.table_by_name(&name.db, &name.table);
            if let Some(table) = table.filter(|t| t.has_rows()) {
                for id in table.physical_ids() {
                    names.entry(id).or_insert_with(|| Arc::clone(name));
                }
            }
        }
        names
    }
}

/// `mysql.tidb_ddl_job` as TiDB v6.2+ creates it: `(job_id bigint not null, reorg int,
/// schema_ids text, table_ids text, job_meta longblob, type int, processing int,
/// primary key(job_id))`, column ids 1 to 7.
pub fn ddl_job_table() -> TableInfo {
    let column = |id: i64, name: &str, code: u8, flags: u64, charset: &str| {
        let mut column = ColumnInfo { id, offset: id - 1, ..ColumnInfo::default() };
        column.name = CiStr::new(name);
        column.state = state::PUBLIC;
        column.field_type = FieldType { tp: code, flag: flags, ..FieldType::default() };
        if !charset.is_empty() {
            column.field_type.charset = charset.into();
            column.field_type.collate =
                if charset == "binary" { "binary".into() } else { alloc::format!("{charset}_bin") };
        }
        column
    };
    let mut table = TableInfo { id: DDL_JOB_TABLE_ID, pk_is_handle: true, ..TableInfo::default() };
    table.name = CiStr::new("tidb_ddl_job");
    table.state = state::PUBLIC;
    table.max_col_id = 7;
    table.cols = alloc::vec![
        column(1, "job_id", tp::LONGLONG, flag::PRI_KEY | flag::NOT_NULL, ""),
        column(2, "reorg", tp::LONG, 0, ""),
        column(3, "schema_ids", tp::BLOB, 0, "utf8mb4"),
        column(4, "table_ids", tp::BLOB, 0, "utf8mb4"),
        column(5, "job_meta", tp::LONG_BLOB, flag::BINARY, "binary"),
        column(6, "type", tp::LONG, 0, ""),
        column(7, "processing", tp::LONG, 0, ""),
    ];
    table
}
