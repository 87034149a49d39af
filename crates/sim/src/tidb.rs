//! A TiDB layer over the simulated cluster: [`TidbWorkload`] writes what TiDB writes to TiKV
//! and remembers, as typed values, what a decoding change feed must deliver.
//!
//! - **Schema**: the meta keys TiDB keeps (`SchemaVersionKey`, the `DBs` hash of DBInfo JSON,
//!   one `DB:{id}` hash of TableInfo JSON per database), with the `mysql` database holding
//!   `tidb_ddl_job`, and a database `demo` of tables `t0`, `t1`, .. whose columns cover the
//!   column types (integers signed and unsigned, DECIMAL, VARCHAR, VARBINARY, DATETIME(6),
//!   DATE, TIME(3), TIMESTAMP, DOUBLE, JSON, ENUM, SET, BIT, YEAR), NULLs included.
//! - **Rows**: inserts, updates and deletes of int-handle rows in row format v2, some in v1
//!   (as an older TiDB wrote them), two-phase or one-phase, some rolled back.
//! - **DDL**, as TiDB v6.2+ runs it: a job row in `mysql.tidb_ddl_job` (queueing), then one
//!   transaction with the meta changes, the new schema version and the job row in state done
//!   (its commit ts is the DDL's), then the job row deleted (moved to history). Jobs: add column
//!   (with a default the old rows read), drop column, rename table (away and back), truncate
//!   table (a new table id).
//!
//! [`TidbWorkload::expected`] holds the change events of every committed transaction in the
//! JSON-lines form `kvfeed watch --table db.tbl` prints, built from the values the workload
//! wrote (not by decoding what it stored); [`verify_tidb`] checks a watcher's lines against it,
//! column by column.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kvfeed_span::table::record_key;
use kvfeed_tidb::decimal::Decimal;
use kvfeed_tidb::json::Json;
use kvfeed_tidb::key::{self, DBS_KEY, DDL_JOB_TABLE_ID, MetaKey, SCHEMA_VERSION_KEY};
use kvfeed_tidb::render::value_json;
use kvfeed_tidb::schema::{
    CiStr, ColumnInfo, DbInfo, FieldType, HistoryInfo, Job, TableInfo, action, flag, job_state,
    state, tp,
};
use kvfeed_tidb::time::{Duration, Time};
use kvfeed_tidb::{Value, ddl_job_table};
use serde_json::{Map, Value as JsonValue, json};

use crate::cluster::Cluster;
use crate::mvcc::Mutation;
use crate::workload::{SplitMix64, TxnOutcome, run_txn};

/// The database of the workload's tables.
pub const TIDB_DB: &str = "demo";
/// The id of `mysql` (TiDB's system database).
const MYSQL_DB_ID: i64 = 1;
/// The id of [`TIDB_DB`].
const DEMO_DB_ID: i64 = 2;
/// Where new ids (jobs, tables made by TRUNCATE) start.
const FIRST_ALLOCATED_ID: i64 = 10_000;
/// The job state of a job waiting to run.
const JOB_QUEUEING: u32 = 8;
/// At most this many columns: beyond it, a column change drops one.
const MAX_COLUMNS: usize = 24;

/// Shape of a TiDB workload.
#[derive(Debug, Clone)]
pub struct TidbConfig {
    /// The seed.
    pub seed: u64,
    /// The tables' ids at the start (`demo.t0` is the first): the cluster's layout.
    pub table_ids: Vec<i64>,
    /// Row handles per table (`0..keys_per_table`).
    pub keys_per_table: i64,
    /// Rows per transaction, at most.
    pub max_txn_size: usize,
    /// One transaction in this many, on average, is a DDL job (0: none).
    pub ddl_every: u64,
    /// Percentage of rows written in row format v1.
    pub v1_percent: u64,
    /// Percentage of one-phase transactions.
    pub one_pc_percent: u64,
    /// Percentage of transactions rolled back instead of committed.
    pub rollback_percent: u64,
}

impl Default for TidbConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            table_ids: vec![100],
            keys_per_table: 1000,
            max_txn_size: 6,
            ddl_every: 100,
            v1_percent: 10,
            one_pc_percent: 20,
            rollback_percent: 5,
        }
    }
}

/// What one step of the workload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TidbStep {
    /// Rows committed at this ts.
    Rows(u64),
    /// A DDL job finished at this ts.
    Ddl(u64),
    /// Rolled back or refused (a key was locked): nothing changed.
    Nothing,
}

/// A row as the workload wrote it: column id -> value, for the public columns.
type SimRow = BTreeMap<i64, Value>;

/// One table of the workload: its schema and rows now.
#[derive(Debug, Clone)]
struct SimTable {
    /// Its name at the start, which a watcher follows (`t0`, ..).
    base: String,
    info: TableInfo,
    /// Handle -> (column id -> value), for the public columns.
    rows: BTreeMap<i64, BTreeMap<i64, Value>>,
}

impl SimTable {
    fn full_name(&self) -> String {
        format!("{TIDB_DB}.{}", self.info.name.o)
    }

    /// A row as JSON, `{"column": value, ..}` in column order.
    fn row_json(&self, row: &BTreeMap<i64, Value>) -> JsonValue {
        let mut out = Map::new();
        for column in &self.info.cols {
            if let Some(value) = row.get(&column.id) {
                out.insert(column.name.o.clone(), value_json(value));
            }
        }
        JsonValue::Object(out)
    }
}

/// A seeded TiDB workload (see the module documentation).
#[derive(Debug, Clone)]
pub struct TidbWorkload {
    config: TidbConfig,
    rng: SplitMix64,
    tables: Vec<SimTable>,
    schema_version: i64,
    next_id: i64,
    expected: Vec<JsonValue>,
    ddl_count: u64,
}

impl TidbWorkload {
    /// A workload from `config` (nothing is written before [`bootstrap`](Self::bootstrap)).
    #[must_use]
    pub fn new(config: TidbConfig) -> Self {
        let tables = config
            .table_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| SimTable {
                base: format!("t{i}"),
                info: initial_table(id, &format!("t{i}")),
                rows: BTreeMap::new(),
            })
            .collect();
        Self {
            rng: SplitMix64::new(config.seed),
            config,
            tables,
            schema_version: 1,
            next_id: FIRST_ALLOCATED_ID,
            expected: Vec::new(),
            ddl_count: 0,
        }
    }

    /// The names a watcher follows: `demo.t0`, `demo.t1`, ..
    #[must_use]
    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| format!("{TIDB_DB}.{}", t.base)).collect()
    }

    /// The change events of every committed transaction so far, in commit order, in the
    /// JSON-lines form of `kvfeed watch --table db.tbl` (tables under their names then).
    #[must_use]
    pub fn expected(&self) -> &[JsonValue] {
        &self.expected
    }

    /// DDL jobs finished so far.
    #[must_use]
    pub fn ddl_count(&self) -> u64 {
        self.ddl_count
    }

    /// Writes the schema as TiDB keeps it (the databases, the tables, the schema version);
    /// returns its commit ts. A watcher starts at or after it.
    pub fn bootstrap(&mut self, cluster: &Cluster) -> Result<u64, crate::TxnError> {
        let mysql = db_info(MYSQL_DB_ID, "mysql");
        let demo = db_info(DEMO_DB_ID, TIDB_DB);
        let mut mutations = vec![
            Mutation::put(meta_string(SCHEMA_VERSION_KEY), self.schema_version.to_string()),
            Mutation::put(meta_field(DBS_KEY, &key::db_key(MYSQL_DB_ID)), to_json(&mysql)),
            Mutation::put(meta_field(DBS_KEY, &key::db_key(DEMO_DB_ID)), to_json(&demo)),
            Mutation::put(table_meta_key(MYSQL_DB_ID, DDL_JOB_TABLE_ID), to_json(&ddl_job_table())),
        ];
        for table in &self.tables {
            mutations.push(Mutation::put(
                table_meta_key(DEMO_DB_ID, table.info.id),
                to_json(&table.info),
            ));
        }
        cluster.commit_2pc(&mutations).map(|(_, commit_ts)| commit_ts)
    }

    /// Runs one transaction: rows, or now and then a DDL job.
    pub fn step(&mut self, cluster: &Cluster) -> TidbStep {
        if self.config.ddl_every > 0 && self.rng.below(self.config.ddl_every) == 0 {
            return self.ddl(cluster);
        }
        self.rows(cluster)
    }

    /// One transaction of row changes.
    fn rows(&mut self, cluster: &Cluster) -> TidbStep {
        let size = 1 + self.rng.below(self.config.max_txn_size.max(1) as u64) as usize;
        // (table index, handle, new row or None for a delete)
        let mut changes: Vec<(usize, i64, Option<SimRow>)> = Vec::new();
        let mut mutations = Vec::new();
        for _ in 0..size {
            let t = self.rng.below(self.tables.len() as u64) as usize;
            let handle = self.rng.below(self.config.keys_per_table.max(1) as u64) as i64;
            if changes.iter().any(|(ct, h, _)| *ct == t && *h == handle) {
                continue;
            }
            let table = &self.tables[t];
            let key = Bytes::from(record_key(table.info.id, handle));
            let exists = table.rows.contains_key(&handle);
            if exists && self.rng.chance(25) {
                mutations.push(Mutation::delete(key));
                changes.push((t, handle, None));
                continue;
            }
            let row = self.new_row(t, handle);
            let v1 = self.rng.chance(self.config.v1_percent);
            let value = encode_row(&self.tables[t].info, &row, v1);
            mutations.push(Mutation::put(key, value));
            changes.push((t, handle, Some(row)));
        }
        let Some(commit_ts) = self.commit(cluster, &mutations) else { return TidbStep::Nothing };
        for (t, handle, row) in changes {
            let table = &mut self.tables[t];
            let before = table.rows.get(&handle).map(|r| table.row_json(r));
            let after = row.as_ref().map(|r| table.row_json(r));
            let kind = match (&before, &after) {
                (None, _) => "insert",
                (Some(_), Some(_)) => "update",
                (Some(_), None) => "delete",
            };
            self.expected.push(json!({
                "kind": kind, "table": table.full_name(), "commit_ts": commit_ts,
                "before": before, "after": after,
            }));
            match row {
                Some(row) => table.rows.insert(handle, row),
                None => table.rows.remove(&handle),
            };
        }
        TidbStep::Rows(commit_ts)
    }

    /// Commits `mutations` in one or two phases, or rolls them back; the commit ts if
    /// committed.
    fn commit(&mut self, cluster: &Cluster, mutations: &[Mutation]) -> Option<u64> {
        if mutations.is_empty() {
            return None;
        }
        let one_pc = self.rng.chance(self.config.one_pc_percent);
        // Drawn for two-phase transactions only (the seed's sequence of draws is the workload).
        let rollback = !one_pc && self.rng.chance(self.config.rollback_percent);
        match run_txn(cluster, mutations, one_pc, rollback) {
            TxnOutcome::OnePc { commit_ts } | TxnOutcome::Committed { commit_ts, .. } => {
                Some(commit_ts)
            }
            TxnOutcome::RolledBack { .. } | TxnOutcome::Conflict => None,
        }
    }

    /// A new row for table `t`: a value for every public column.
    fn new_row(&mut self, t: usize, handle: i64) -> BTreeMap<i64, Value> {
        let columns = self.tables[t].info.cols.clone();
        let mut row = BTreeMap::new();
        for column in &columns {
            let value = if column.field_type.flag & flag::PRI_KEY != 0 {
                Value::Int(handle)
            } else if !column.field_type.is_not_null() && self.rng.chance(10) {
                Value::Null
            } else {
                random_value(&column.field_type, &mut self.rng)
            };
            row.insert(column.id, value);
        }
        row
    }

    /// One DDL job on a random table.
    fn ddl(&mut self, cluster: &Cluster) -> TidbStep {
        let t = self.rng.below(self.tables.len() as u64) as usize;
        let old = self.tables[t].clone();
        let table = &old.info;
        let quoted = format!("`{TIDB_DB}`.`{}`", table.name.o);
        let mut info = table.clone();
        let job_table_id = table.id;
        let choice = self.rng.below(100);
        let (kind, query) = if choice < 35 && table.cols.len() < MAX_COLUMNS {
            let id = info.max_col_id + 1;
            info.max_col_id = id;
            let column = added_column(id, info.cols.len(), self.rng.chance(50));
            let query = format!(
                "ALTER TABLE {quoted} ADD COLUMN `{}` {}",
                column.name.o,
                column_sql(&column)
            );
            info.cols.push(column);
            (action::ADD_COLUMN, query)
        } else if choice < 60 && table.cols.len() > 2 {
            let candidates: Vec<usize> = (1..info.cols.len()).collect();
            let drop = candidates[self.rng.below(candidates.len() as u64) as usize];
            let column = info.cols.remove(drop);
            for (offset, column) in info.cols.iter_mut().enumerate() {
                column.offset = offset as i64;
            }
            (action::DROP_COLUMN, format!("ALTER TABLE {quoted} DROP COLUMN `{}`", column.name.o))
        } else if choice < 80 {
            let new_name = if table.name.o == old.base {
                format!("{}_renamed", old.base)
            } else {
                old.base.clone()
            };
            info.name = CiStr::new(&new_name);
            (action::RENAME_TABLE, format!("RENAME TABLE {quoted} TO `{TIDB_DB}`.`{new_name}`"))
        } else {
            info.id = self.allocate_id();
            (action::TRUNCATE_TABLE, format!("TRUNCATE TABLE {quoted}"))
        };
        info.revision += 1;
        let job_id = self.allocate_id();
        let mut job = Job {
            id: job_id,
            action: kind,
            schema_id: DEMO_DB_ID,
            table_id: job_table_id,
            schema_name: TIDB_DB.into(),
            table_name: table.name.o.clone(),
            state: JOB_QUEUEING,
            query: query.clone(),
            version: 1,
            raw_args: JsonValue::Array(Vec::new()),
            ..Job::default()
        };
        let job_key = Bytes::from(record_key(DDL_JOB_TABLE_ID, job_id));
        // Queued: a job row TiDB's DDL owner picks up.
        if cluster.commit_2pc(&[Mutation::put(job_key.clone(), job_row(&job))]).is_err() {
            return TidbStep::Nothing;
        }
        job.state = job_state::DONE;
        let version = self.schema_version + 1;
        job.binlog = HistoryInfo {
            schema_version: version,
            table_info: Some(info.clone()),
            ..HistoryInfo::default()
        };
        let mut mutations = vec![
            Mutation::put(meta_string(SCHEMA_VERSION_KEY), version.to_string()),
            Mutation::put(table_meta_key(DEMO_DB_ID, info.id), to_json(&info)),
            Mutation::put(job_key.clone(), job_row(&job)),
        ];
        if info.id != table.id {
            mutations.push(Mutation::delete(table_meta_key(DEMO_DB_ID, table.id)));
        }
        let done = cluster.commit_2pc(&mutations);
        // Moved to history: the job row goes (a retry of a refused delete is not needed).
        let _ = cluster.commit_2pc(&[Mutation::delete(job_key)]);
        let Ok((_, commit_ts)) = done else { return TidbStep::Nothing };
        self.schema_version = version;
        self.ddl_count += 1;
        let watched = format!("{TIDB_DB}.{}", old.base);
        let names = [old.full_name(), format!("{TIDB_DB}.{}", info.name.o)];
        if names.contains(&watched) {
            self.expected.push(json!({
                "kind": "ddl", "table": watched, "commit_ts": commit_ts, "query": query,
            }));
        }
        let entry = &mut self.tables[t];
        match kind {
            action::TRUNCATE_TABLE => entry.rows.clear(),
            action::ADD_COLUMN => {
                let column = info.cols.last().expect("a column was added");
                let default = default_value(column);
                for row in entry.rows.values_mut() {
                    row.insert(column.id, default.clone());
                }
            }
            action::DROP_COLUMN => {
                let kept: BTreeSet<i64> = info.cols.iter().map(|c| c.id).collect();
                for row in entry.rows.values_mut() {
                    row.retain(|id, _| kept.contains(id));
                }
            }
            _ => {}
        }
        entry.info = info;
        TidbStep::Ddl(commit_ts)
    }

    fn allocate_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("schema structs serialize")
}

fn meta_string(name: &[u8]) -> Bytes {
    MetaKey::String { key: name.to_vec() }.encode().into()
}

fn meta_field(hash: &[u8], field: &[u8]) -> Bytes {
    MetaKey::HashField { key: hash.to_vec(), field: field.to_vec() }.encode().into()
}

fn table_meta_key(db_id: i64, table_id: i64) -> Bytes {
    meta_field(&key::db_key(db_id), &key::table_field(table_id))
}

fn db_info(id: i64, name: &str) -> DbInfo {
    DbInfo {
        id,
        db_name: CiStr::new(name),
        charset: "utf8mb4".into(),
        collate: "utf8mb4_bin".into(),
        state: state::PUBLIC,
    }
}

/// A job's row in `mysql.tidb_ddl_job` (row format v2; `job_id` is the handle).
fn job_row(job: &Job) -> Vec<u8> {
    let table = ddl_job_table();
    let values = [
        (2, Value::Int(0)),
        (3, Value::Text(job.schema_id.to_string())),
        (4, Value::Text(job.table_id.to_string())),
        (5, Value::Bytes(to_json(job))),
        (6, Value::Int(i64::from(job.action))),
        (7, Value::Int(i64::from(job.state != JOB_QUEUEING))),
    ];
    let cells: Vec<(i64, Option<Vec<u8>>)> = values
        .iter()
        .map(|(id, value)| {
            let column = table.cols.iter().find(|c| c.id == *id).expect("a job table column");
            (*id, kvfeed_tidb::value::write::v2(&column.field_type, value))
        })
        .collect();
    kvfeed_tidb::row::write::v2(&cells)
}

/// A row's value in format v2 or v1 (the handle column is in the key, not the value).
fn encode_row(info: &TableInfo, row: &BTreeMap<i64, Value>, v1: bool) -> Vec<u8> {
    let columns = info.cols.iter().filter(|c| c.field_type.flag & flag::PRI_KEY == 0);
    if v1 {
        let datums: Vec<_> = columns
            .filter_map(|c| {
                let value = row.get(&c.id)?;
                Some((c.id, kvfeed_tidb::value::write::datum(&c.field_type, value)))
            })
            .collect();
        kvfeed_tidb::row::write::v1(&datums)
    } else {
        let cells: Vec<_> = columns
            .filter_map(|c| {
                let value = row.get(&c.id)?;
                Some((c.id, kvfeed_tidb::value::write::v2(&c.field_type, value)))
            })
            .collect();
        kvfeed_tidb::row::write::v2(&cells)
    }
}

/// A column of the initial tables.
fn column(id: i64, name: &str, code: u8, flags: u64, flen: i64, decimal: i64) -> ColumnInfo {
    let mut field_type = FieldType { tp: code, flag: flags, flen, decimal, ..FieldType::default() };
    let text = matches!(code, tp::VARCHAR | tp::ENUM | tp::SET) && flags & flag::BINARY == 0;
    if text {
        field_type.charset = "utf8mb4".into();
        field_type.collate = "utf8mb4_bin".into();
    } else if matches!(code, tp::VARCHAR | tp::JSON) {
        field_type.charset = "binary".into();
        field_type.collate = "binary".into();
    }
    if code == tp::ENUM {
        field_type.elems = vec!["red".into(), "green".into(), "blue".into()];
    } else if code == tp::SET {
        field_type.elems = vec!["a".into(), "b".into(), "c".into()];
    }
    ColumnInfo {
        id,
        name: CiStr::new(name),
        offset: id - 1,
        field_type,
        state: state::PUBLIC,
        version: 2,
        ..ColumnInfo::default()
    }
}

/// `demo.t{i}`: an int handle `id` and a column of each type the workload writes.
fn initial_table(id: i64, name: &str) -> TableInfo {
    let cols = vec![
        column(1, "id", tp::LONGLONG, flag::PRI_KEY | flag::NOT_NULL, 20, 0),
        column(2, "c_int", tp::LONG, 0, 11, 0),
        column(3, "c_uint", tp::LONGLONG, flag::UNSIGNED | flag::NOT_NULL, 20, 0),
        column(4, "c_decimal", tp::NEW_DECIMAL, 0, 12, 3),
        column(5, "c_varchar", tp::VARCHAR, 0, 64, 0),
        column(6, "c_varbinary", tp::VARCHAR, flag::BINARY, 32, 0),
        column(7, "c_datetime", tp::DATETIME, 0, 26, 6),
        column(8, "c_date", tp::DATE, 0, 10, 0),
        column(9, "c_time", tp::DURATION, 0, 14, 3),
        column(10, "c_timestamp", tp::TIMESTAMP, 0, 19, 0),
        column(11, "c_double", tp::DOUBLE, 0, 22, -1),
        column(12, "c_json", tp::JSON, flag::BINARY, 0, 0),
        column(13, "c_enum", tp::ENUM, 0, 5, 0),
        column(14, "c_set", tp::SET, 0, 5, 0),
        column(15, "c_bit", tp::BIT, flag::UNSIGNED, 12, 0),
        column(16, "c_year", tp::YEAR, flag::UNSIGNED, 4, 0),
    ];
    TableInfo {
        id,
        name: CiStr::new(name),
        charset: "utf8mb4".into(),
        collate: "utf8mb4_bin".into(),
        max_col_id: cols.len() as i64,
        cols,
        state: state::PUBLIC,
        pk_is_handle: true,
        ..TableInfo::default()
    }
}

/// A column an ADD COLUMN adds: INT or VARCHAR, nullable, with a default old rows read.
fn added_column(id: i64, offset: usize, text: bool) -> ColumnInfo {
    let mut column = if text {
        column(id, &format!("c_add{id}"), tp::VARCHAR, 0, 32, 0)
    } else {
        column(id, &format!("c_add{id}"), tp::LONG, 0, 11, 0)
    };
    column.offset = offset as i64;
    let default = if text {
        JsonValue::from(format!("d{id}"))
    } else {
        JsonValue::from((id * 10).to_string())
    };
    column.origin_default = default.clone();
    column.default = default;
    column
}

/// The SQL type of an added column, for the query text.
fn column_sql(column: &ColumnInfo) -> String {
    match column.field_type.tp {
        tp::VARCHAR => format!("VARCHAR(32) DEFAULT '{}'", column.default.as_str().unwrap_or("")),
        _ => format!("INT DEFAULT {}", column.default.as_str().unwrap_or("0")),
    }
}

/// The value an added column's default gives rows written before it.
fn default_value(column: &ColumnInfo) -> Value {
    let text = column.origin_default.as_str().unwrap_or_default();
    match column.field_type.tp {
        tp::VARCHAR => Value::Text(text.into()),
        _ => Value::Int(text.parse().unwrap_or(0)),
    }
}

/// A time with a fraction of `fsp` digits.
fn random_time(rng: &mut SplitMix64, fsp: u8, with_clock: bool) -> Time {
    let unit = 10u32.pow(6 - u32::from(fsp));
    Time {
        year: 1990 + rng.below(50) as u16,
        month: 1 + rng.below(12) as u8,
        day: 1 + rng.below(28) as u8,
        hour: if with_clock { rng.below(24) as u8 } else { 0 },
        minute: if with_clock { rng.below(60) as u8 } else { 0 },
        second: if with_clock { rng.below(60) as u8 } else { 0 },
        microsecond: if with_clock { rng.below(1_000_000) as u32 / unit * unit } else { 0 },
        fsp,
    }
}

/// A value of type `ft` (never NULL).
fn random_value(ft: &FieldType, rng: &mut SplitMix64) -> Value {
    let n = rng.next_u64();
    match ft.tp {
        tp::LONG if !ft.is_unsigned() => Value::Int(i64::from(n as i32)),
        tp::LONGLONG if ft.is_unsigned() => Value::Uint(n),
        tp::LONGLONG | tp::LONG => Value::Int(n as i64),
        tp::NEW_DECIMAL => {
            let text = format!(
                "{}{}.{:03}",
                if n.is_multiple_of(3) { "-" } else { "" },
                n % 1_000_000_000,
                (n >> 40) % 1000
            );
            Value::Decimal(Decimal::parse(&text).unwrap_or_else(Decimal::zero).rescale(3))
        }
        tp::VARCHAR if ft.is_binary_string() => {
            Value::Bytes((0..n % 20).map(|i| (n >> (i % 8 * 8)) as u8 ^ i as u8).collect())
        }
        tp::VARCHAR => {
            let words = ["alpha", "beta", "gamma", "délta", "ε", "zeta", "\"q\"", "tab\t", "漢字"];
            let count = 1 + n % 4;
            Value::Text(
                (0..count)
                    .map(|i| words[((n >> (i * 8)) % words.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        tp::DATETIME => Value::Datetime(random_time(rng, ft.fsp(), true)),
        tp::DATE => Value::Date(random_time(rng, 0, false)),
        tp::TIMESTAMP => {
            Value::Timestamp(Time { year: 2000 + (n % 30) as u16, ..random_time(rng, 0, true) })
        }
        tp::DURATION => {
            let seconds = (n % (838 * 3600)) as i64;
            let millis = ((n >> 32) % 1000) as i64;
            let nanos = (seconds * 1000 + millis) * 1_000_000;
            Value::Duration(Duration {
                nanos: if n.is_multiple_of(4) { -nanos } else { nanos },
                fsp: ft.fsp(),
            })
        }
        tp::DOUBLE => Value::Double((n % 2_000_000) as f64 / 16.0 - 50_000.0),
        tp::JSON => Value::Json(Json::Object(vec![
            ("id".into(), Json::Int((n % 10_000) as i64)),
            (
                "tags".into(),
                Json::Array(vec![
                    Json::String(format!("t{}", n % 7)),
                    Json::Bool(n.is_multiple_of(2)),
                    Json::Null,
                ]),
            ),
            ("x".into(), Json::Double((n % 1000) as f64 / 4.0)),
        ])),
        tp::ENUM => {
            let index = 1 + n % ft.elems.len().max(1) as u64;
            Value::Enum {
                index,
                name: ft.elems.get(index as usize - 1).cloned().unwrap_or_default(),
            }
        }
        tp::SET => {
            let bits = n % (1 << ft.elems.len().min(8));
            let names: Vec<&str> = ft
                .elems
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, e)| e.as_str())
                .collect();
            Value::Set { bits, names: names.join(",") }
        }
        tp::BIT => Value::Bit(n % (1 << ft.flen.clamp(1, 63))),
        tp::YEAR => Value::Int(1901 + (n % 255) as i64),
        _ => Value::Null,
    }
}

/// What [`verify_tidb`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TidbReport {
    /// Row events the watcher should have delivered (up to its last resolved ts).
    pub rows_expected: usize,
    /// Row events it delivered.
    pub rows_delivered: usize,
    /// DDL events expected and delivered.
    pub ddl_expected: usize,
    /// DDL events delivered.
    pub ddl_delivered: usize,
    /// The watcher's last resolved ts (what was checked is at or below it).
    pub resolved_ts: u64,
    /// Expected events not delivered.
    pub missing: usize,
    /// Events delivered that were not expected (a second delivery of one included).
    pub unexpected: usize,
    /// Events delivered with another kind or other column values than written.
    pub mismatched: usize,
    /// Events out of commit-ts order, or at or below a resolved ts delivered before them.
    pub out_of_order: usize,
    /// What was wrong, first found first (empty: clean).
    pub violations: Vec<String>,
}

impl TidbReport {
    /// Whether nothing was wrong.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks a watcher's JSON lines (`got`, in arrival order, resolved lines included) of the
/// tables `watched` from `start_ts` against the workload's `expected` events, those after
/// `start_ts` up to the watcher's last resolved ts: every expected row event once with the same kind and every column's value before and
/// after, every DDL event, nothing else; events in commit-ts order with a DDL after the rows of
/// its ts; nothing at or below a resolved ts after it.
#[must_use]
pub fn verify_tidb(
    expected: &[JsonValue],
    watched: &[String],
    start_ts: u64,
    got: &[JsonValue],
) -> TidbReport {
    let mut report = TidbReport::default();
    let mut last: Option<(u64, bool)> = None;
    let mut resolved = 0u64;
    let mut delivered: BTreeMap<(String, u64, String), Vec<&JsonValue>> = BTreeMap::new();
    for (line, event) in got.iter().enumerate() {
        let kind = event["kind"].as_str().unwrap_or("");
        if kind == "resolved" {
            let ts = event["ts"].as_u64().unwrap_or(0);
            if ts < resolved {
                report.out_of_order += 1;
                report
                    .violations
                    .push(format!("line {line}: resolved ts {ts} went back from {resolved}"));
            }
            resolved = resolved.max(ts);
            continue;
        }
        let ts = event["commit_ts"].as_u64().unwrap_or(0);
        if ts <= resolved {
            report.out_of_order += 1;
            report
                .violations
                .push(format!("line {line}: {kind} at {ts} after resolved ts {resolved}"));
        }
        let is_ddl = kind == "ddl";
        if let Some((last_ts, last_ddl)) = last
            && (ts < last_ts || (ts == last_ts && last_ddl && !is_ddl))
        {
            report.out_of_order += 1;
            report
                .violations
                .push(format!("line {line}: {kind} at {ts} after an event at {last_ts}"));
        }
        last = Some((ts, is_ddl));
        if is_ddl {
            report.ddl_delivered += 1;
        } else {
            report.rows_delivered += 1;
        }
        delivered.entry(event_key(event)).or_default().push(event);
    }
    report.resolved_ts = resolved;
    for want in expected {
        let table = want["table"].as_str().unwrap_or("");
        let ts = want["commit_ts"].as_u64().unwrap_or(0);
        if !watched.iter().any(|w| w == table) || ts <= start_ts || ts > resolved {
            continue;
        }
        if want["kind"] == "ddl" {
            report.ddl_expected += 1;
        } else {
            report.rows_expected += 1;
        }
        let key = event_key(want);
        match delivered.get_mut(&key).and_then(|found| (!found.is_empty()).then(|| found.remove(0)))
        {
            None => {
                report.missing += 1;
                report.violations.push(format!("missing: {want}"));
            }
            Some(got) => {
                if let Some(diff) = difference(want, got) {
                    report.mismatched += 1;
                    report
                        .violations
                        .push(format!("{} {} at {}: {diff}", key.0, want["kind"], key.1));
                }
            }
        }
    }
    for (key, rest) in delivered {
        for event in rest {
            report.unexpected += 1;
            report.violations.push(format!("not expected ({} at {}): {event}", key.0, key.1));
        }
    }
    report
}

/// `(table, commit ts, row handle or the DDL's query)`: what identifies an event.
fn event_key(event: &JsonValue) -> (String, u64, String) {
    let id = if event["kind"] == "ddl" {
        format!("ddl {}", event["query"])
    } else {
        let image = if event["after"].is_null() { &event["before"] } else { &event["after"] };
        format!("row {}", image["id"])
    };
    (event["table"].as_str().unwrap_or("").to_owned(), event["commit_ts"].as_u64().unwrap_or(0), id)
}

/// How `got` differs from `want`, column by column; `None` when it does not.
fn difference(want: &JsonValue, got: &JsonValue) -> Option<String> {
    if want["kind"] != got["kind"] {
        return Some(format!("kind {} delivered as {}", want["kind"], got["kind"]));
    }
    for image in ["before", "after"] {
        let (w, g) = (&want[image], &got[image]);
        match (w.as_object(), g.as_object()) {
            (None, None) => {}
            (Some(w), Some(g)) => {
                for (column, value) in w {
                    match g.get(column) {
                        Some(found) if found == value => {}
                        Some(found) => {
                            return Some(format!("{image}.{column} is {found}, wrote {value}"));
                        }
                        None => return Some(format!("{image}.{column} missing (wrote {value})")),
                    }
                }
                if let Some(extra) = g.keys().find(|c| !w.contains_key(*c)) {
                    return Some(format!("{image}.{extra} delivered but not a column then"));
                }
            }
            _ => return Some(format!("{image} is {g}, expected {w}")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_names_the_column_that_differs_and_the_order_broken() {
        let want = vec![
            json!({"kind": "insert", "table": "demo.t0", "commit_ts": 10, "before": null, "after": {"id": 1, "a": 2}}),
            json!({"kind": "ddl", "table": "demo.t0", "commit_ts": 11, "query": "q"}),
            json!({"kind": "insert", "table": "demo.t1", "commit_ts": 12, "before": null, "after": {"id": 1}}),
        ];
        let watched = vec!["demo.t0".to_owned()];
        let mut got = vec![want[0].clone(), want[1].clone(), json!({"kind": "resolved", "ts": 20})];
        assert!(verify_tidb(&want, &watched, 0, &got).is_clean());
        got[0]["after"]["a"] = json!(3);
        let report = verify_tidb(&want, &watched, 0, &got);
        assert_eq!(report.violations, ["demo.t0 \"insert\" at 10: after.a is 3, wrote 2"]);
        assert_eq!((report.mismatched, report.missing, report.unexpected), (1, 0, 0));
        got.swap(0, 1);
        got[1]["after"]["a"] = json!(2);
        let report = verify_tidb(&want, &watched, 0, &got);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(report.violations[0].contains("insert at 10 after an event at 11"));
        assert_eq!(report.out_of_order, 1);
        got.push(want[0].clone());
        let report = verify_tidb(&want, &watched, 0, &got);
        assert_eq!((report.unexpected, report.out_of_order), (1, 2), "a second copy: {report:?}");
        let report = verify_tidb(&want, &watched, 0, &got[..1]);
        assert_eq!(
            (report.rows_expected, report.resolved_ts),
            (0, 0),
            "nothing resolved, nothing checked"
        );
    }
}
