//! A TiDB schema followed across DDL: databases and tables by id and by name, and for every
//! physical table id the decoders valid over time, so a row is decoded by the schema in force
//! when it was committed. Sans-IO: the caller feeds it the meta snapshot and the DDL jobs.
//!
//! Rules (TiCDC's): only jobs in state done are applied, in schema-version order (a job whose
//! version is 0 changed nothing; one at or below the last applied version was already applied);
//! a job takes effect at the commit ts of its job row (`finished_ts`); a row with commit ts C is
//! decoded by the schema at C - 1, because with async commit a row may share its commit ts with
//! a DDL's finish and was written under the schema before it.
//!
//! Invariant: `versions[id]` is sorted by ts, one entry per change of that physical table, the
//! last being the current state; `tables` holds exactly the tables (views and sequences
//! included) of databases in `dbs`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::schema::{DbInfo, Job, TableInfo, action, job_state};
use crate::{Error, RowDecoder};

/// One table's current schema and its database.
#[derive(Clone, Debug)]
struct TableEntry {
    db_id: i64,
    info: Arc<TableInfo>,
}

/// What an applied job changed, for the change feed to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaChange {
    /// The job's id.
    pub job_id: i64,
    /// Its action ([`action`]).
    pub action: u32,
    /// The schema version it produced.
    pub schema_version: i64,
    /// When it took effect (the commit ts of its job row).
    pub finished_ts: u64,
    /// The database's name (after the change).
    pub db: String,
    /// The table's name (after the change; empty for database jobs).
    pub table: String,
    /// The statement.
    pub query: String,
    /// Physical table ids whose decoding changed (old and new ids of a truncate included).
    pub physical_ids: Vec<i64>,
}

/// One physical table's schema from a ts on: its decoder, or `None` once dropped.
type Version = (u64, Option<Arc<RowDecoder>>);

/// Databases and tables, current and past.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    dbs: BTreeMap<i64, DbInfo>,
    tables: BTreeMap<i64, TableEntry>,
    /// Per physical id: (valid from ts, decoder or `None` once dropped).
    versions: BTreeMap<i64, Vec<Version>>,
    schema_version: i64,
}

impl Catalog {
    /// The schema as read from the meta keys at one ts: every database and its tables (views and
    /// sequences too), at schema version `schema_version`. The snapshot's schemas are the
    /// earliest known: they decode every row committed before the first DDL applied after.
    pub fn from_snapshot(
        schema_version: i64,
        dbs: Vec<DbInfo>,
        tables: Vec<(i64, TableInfo)>,
    ) -> Result<Self, Error> {
        let mut catalog = Self { schema_version, ..Self::default() };
        for db in dbs {
            catalog.dbs.insert(db.id, db);
        }
        for (db_id, table) in tables {
            if catalog.dbs.contains_key(&db_id) {
                catalog.put_table(db_id, table, 0)?;
            }
        }
        Ok(catalog)
    }

    /// The last schema version applied.
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// A database by id.
    pub fn db(&self, id: i64) -> Option<&DbInfo> {
        self.dbs.get(&id)
    }

    /// A current table by database and table name (compared in lowercase, as TiDB does).
    pub fn table_by_name(&self, db: &str, table: &str) -> Option<&TableInfo> {
        let (db, table) = (db.to_lowercase(), table.to_lowercase());
        let db_id = self.dbs.values().find(|d| d.db_name.l == db)?.id;
        self.tables.values().find(|t| t.db_id == db_id && t.info.name.l == table).map(|t| &*t.info)
    }

    /// A current table by id, with its database.
    pub fn table(&self, id: i64) -> Option<(&DbInfo, &TableInfo)> {
        let entry = self.tables.get(&id)?;
        Some((self.dbs.get(&entry.db_id)?, &entry.info))
    }

    /// The decoder of physical table `id` for a row committed at `commit_ts` (the schema at
    /// `commit_ts - 1`); `None` when the table did not exist then.
    pub fn decoder_at(&self, id: i64, commit_ts: u64) -> Option<&Arc<RowDecoder>> {
        let versions = self.versions.get(&id)?;
        let at = commit_ts.saturating_sub(1);
        let i = versions.partition_point(|(ts, _)| *ts <= at);
        versions.get(i.checked_sub(1)?)?.1.as_ref()
    }

    /// Forgets the schemas no row committed after `ts` can need (the newest at or before `ts`
    /// stays, per table).
    pub fn forget_before(&mut self, ts: u64) {
        self.versions.retain(|_, versions| {
            let keep_from = versions.partition_point(|(from, _)| *from <= ts).saturating_sub(1);
            versions.drain(..keep_from);
            !(versions.len() == 1 && versions[0].1.is_none())
        });
    }

    /// Applies a DDL job read from the job table at `commit_ts`; `Ok(None)` when it is not one
    /// to apply (not done, a no-op, or already applied).
    pub fn apply(&mut self, job: &Job, commit_ts: u64) -> Result<Option<SchemaChange>, Error> {
        let version = job.binlog.schema_version;
        if job.state != job_state::DONE || version == 0 || version <= self.schema_version {
            return Ok(None);
        }
        let mut physical_ids = Vec::new();
        let binlog = &job.binlog;
        let table_info = || {
            binlog.table_info.clone().ok_or_else(|| {
                Error::Schema(alloc::format!(
                    "DDL job {} (type {}) has no TableInfo",
                    job.id,
                    job.action
                ))
            })
        };
        match job.action {
            action::CREATE_SCHEMA => {
                let db = binlog.db_info.clone().ok_or_else(|| {
                    Error::Schema(alloc::format!(
                        "DDL job {} creates a database without DBInfo",
                        job.id
                    ))
                })?;
                self.dbs.insert(db.id, db);
            }
            action::DROP_SCHEMA => {
                let ids: Vec<i64> = self
                    .tables
                    .iter()
                    .filter(|(_, t)| t.db_id == job.schema_id)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    physical_ids.extend(self.drop_table(id, commit_ts));
                }
                self.dbs.remove(&job.schema_id);
            }
            action::DROP_TABLE | action::DROP_VIEW => {
                physical_ids.extend(self.drop_table(job.table_id, commit_ts));
            }
            action::TRUNCATE_TABLE => {
                physical_ids.extend(self.drop_table(job.table_id, commit_ts));
                physical_ids.extend(self.put_table(job.schema_id, table_info()?, commit_ts)?);
            }
            action::CREATE_TABLES => {
                for table in &binlog.multiple_table_infos {
                    physical_ids.extend(self.put_table(job.schema_id, table.clone(), commit_ts)?);
                }
            }
            action::RENAME_TABLES => {
                // Each table keeps its id; its new database is where the job lists it, or its
                // old one when the arguments do not say.
                for table in &binlog.multiple_table_infos {
                    let db_id = rename_target(job, table.id)
                        .or_else(|| self.tables.get(&table.id).map(|t| t.db_id))
                        .unwrap_or(job.schema_id);
                    physical_ids.extend(self.put_table(db_id, table.clone(), commit_ts)?);
                }
            }
            _ => {
                // Every other job that carries a TableInfo replaces the table with it (create,
                // rename, columns, indexes, partitions, options); a database's DBInfo likewise.
                if let Some(table) = binlog.table_info.clone() {
                    if table.id != job.table_id && job.table_id != 0 {
                        physical_ids.extend(self.drop_table(job.table_id, commit_ts));
                    }
                    physical_ids.extend(self.put_table(job.schema_id, table, commit_ts)?);
                } else if let Some(db) = binlog.db_info.clone() {
                    self.dbs.insert(db.id, db);
                }
            }
        }
        self.schema_version = version;
        physical_ids.sort_unstable();
        physical_ids.dedup();
        let db = self
            .dbs
            .get(&job.schema_id)
            .map_or_else(|| job.schema_name.clone(), |d| d.db_name.o.clone());
        let table =
            binlog.table_info.as_ref().map_or_else(|| job.table_name.clone(), |t| t.name.o.clone());
        Ok(Some(SchemaChange {
            job_id: job.id,
            action: job.action,
            schema_version: version,
            finished_ts: commit_ts,
            db,
            table,
            query: job.query.clone(),
            physical_ids,
        }))
    }

    /// Adds or replaces a table; returns the physical ids whose decoding changed (partitions
    /// no longer present are dropped).
    fn put_table(&mut self, db_id: i64, table: TableInfo, ts: u64) -> Result<Vec<i64>, Error> {
        let old: Vec<i64> =
            self.tables.get(&table.id).map(|t| t.info.physical_ids()).unwrap_or_default();
        let new = if table.has_rows() { table.physical_ids() } else { Vec::new() };
        let decoder =
            if table.has_rows() { Some(Arc::new(RowDecoder::new(table.clone())?)) } else { None };
        let mut changed = Vec::new();
        for id in old.iter().filter(|id| !new.contains(id)) {
            self.push_version(*id, ts, None);
            changed.push(*id);
        }
        for id in &new {
            self.push_version(*id, ts, decoder.clone());
            changed.push(*id);
        }
        self.tables.insert(table.id, TableEntry { db_id, info: Arc::new(table) });
        Ok(changed)
    }

    fn drop_table(&mut self, id: i64, ts: u64) -> Vec<i64> {
        let Some(entry) = self.tables.remove(&id) else { return Vec::new() };
        let ids = if entry.info.has_rows() { entry.info.physical_ids() } else { Vec::new() };
        for physical in &ids {
            self.push_version(*physical, ts, None);
        }
        ids
    }

    fn push_version(&mut self, id: i64, ts: u64, decoder: Option<Arc<RowDecoder>>) {
        let versions = self.versions.entry(id).or_default();
        // Two changes at one ts (a drop and a re-create in one job): the later one stands.
        if versions.last().is_some_and(|(at, _)| *at == ts) {
            versions.pop();
        }
        versions.push((ts, decoder));
    }
}

/// The new database id of `table_id` in a RENAME TABLES job's arguments, when they say.
/// Version 1 jobs hold `[old_schema_ids, new_schema_ids, new_table_names, table_ids, ..]`,
/// version 2 an object with `rename_table_infos: [{new_schema_id, table_id, ..}]`.
fn rename_target(job: &Job, table_id: i64) -> Option<i64> {
    let args = &job.raw_args;
    if let Some(infos) = args.get("rename_table_infos").and_then(|v| v.as_array()) {
        return infos
            .iter()
            .find(|info| info.get("table_id").and_then(serde_json::Value::as_i64) == Some(table_id))
            .and_then(|info| info.get("new_schema_id")?.as_i64());
    }
    let list = args.as_array()?;
    let table_ids = list.get(3)?.as_array()?;
    let i = table_ids.iter().position(|id| id.as_i64() == Some(table_id))?;
    list.get(1)?.as_array()?.get(i)?.as_i64()
}
