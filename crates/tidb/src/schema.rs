//! TiDB's schema JSON as it lies in the meta keys and in DDL jobs: `DBInfo`, `TableInfo` (with
//! its columns, indexes and partitions) and `Job`.
//!
//! Field names are TiDB's own (Go's `encoding/json` output: snake case where TiDB tagged a field,
//! the Go name where it did not). Only the fields a decoder or a schema tracker needs are
//! modelled; unknown fields are ignored, missing ones and JSON `null`s take their defaults, so
//! newer or older TiDB versions parse. Names are TiDB's `CIStr` (`{"O": original, "L":
//! lowercase}`; a bare string is accepted too, as TiDB does).

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// A schema element's state; only [`state::PUBLIC`] elements are visible to readers.
pub mod state {
    /// Not yet (or no longer) present.
    pub const NONE: u8 = 0;
    /// Being dropped: deletes only.
    pub const DELETE_ONLY: u8 = 1;
    /// Being added: written by TiDB, not read yet.
    pub const WRITE_ONLY: u8 = 2;
    /// Being backfilled.
    pub const WRITE_REORGANIZATION: u8 = 3;
    /// Being removed after a reorganization.
    pub const DELETE_REORGANIZATION: u8 = 4;
    /// Visible.
    pub const PUBLIC: u8 = 5;
}

/// Column flag bits (`FieldType.Flag`) a decoder looks at.
pub mod flag {
    /// NOT NULL.
    pub const NOT_NULL: u64 = 1 << 0;
    /// Part of the primary key.
    pub const PRI_KEY: u64 = 1 << 1;
    /// UNSIGNED.
    pub const UNSIGNED: u64 = 1 << 5;
    /// BINARY.
    pub const BINARY: u64 = 1 << 7;
}

/// MySQL type codes (`FieldType.Tp`).
pub mod tp {
    /// TINYINT (and BOOL).
    pub const TINY: u8 = 1;
    /// SMALLINT.
    pub const SHORT: u8 = 2;
    /// INT.
    pub const LONG: u8 = 3;
    /// FLOAT.
    pub const FLOAT: u8 = 4;
    /// DOUBLE.
    pub const DOUBLE: u8 = 5;
    /// The NULL literal's type.
    pub const NULL: u8 = 6;
    /// TIMESTAMP.
    pub const TIMESTAMP: u8 = 7;
    /// BIGINT.
    pub const LONGLONG: u8 = 8;
    /// MEDIUMINT.
    pub const INT24: u8 = 9;
    /// DATE.
    pub const DATE: u8 = 10;
    /// TIME.
    pub const DURATION: u8 = 11;
    /// DATETIME.
    pub const DATETIME: u8 = 12;
    /// YEAR.
    pub const YEAR: u8 = 13;
    /// MySQL's internal new date (treated as DATE).
    pub const NEW_DATE: u8 = 14;
    /// VARCHAR and VARBINARY.
    pub const VARCHAR: u8 = 15;
    /// BIT.
    pub const BIT: u8 = 16;
    /// VECTOR (FLOAT32 elements).
    pub const VECTOR_FLOAT32: u8 = 0xe1;
    /// JSON.
    pub const JSON: u8 = 0xf5;
    /// DECIMAL.
    pub const NEW_DECIMAL: u8 = 0xf6;
    /// ENUM.
    pub const ENUM: u8 = 0xf7;
    /// SET.
    pub const SET: u8 = 0xf8;
    /// TINYTEXT / TINYBLOB.
    pub const TINY_BLOB: u8 = 0xf9;
    /// MEDIUMTEXT / MEDIUMBLOB.
    pub const MEDIUM_BLOB: u8 = 0xfa;
    /// LONGTEXT / LONGBLOB.
    pub const LONG_BLOB: u8 = 0xfb;
    /// TEXT / BLOB.
    pub const BLOB: u8 = 0xfc;
    /// VARSTRING (a protocol type; treated as VARCHAR).
    pub const VAR_STRING: u8 = 0xfd;
    /// CHAR and BINARY.
    pub const STRING: u8 = 0xfe;
    /// GEOMETRY (TiDB cannot store it).
    pub const GEOMETRY: u8 = 0xff;
}

/// DDL action types (`Job.type`) a schema tracker acts on.
pub mod action {
    /// CREATE DATABASE.
    pub const CREATE_SCHEMA: u32 = 1;
    /// DROP DATABASE.
    pub const DROP_SCHEMA: u32 = 2;
    /// CREATE TABLE.
    pub const CREATE_TABLE: u32 = 3;
    /// DROP TABLE.
    pub const DROP_TABLE: u32 = 4;
    /// ADD COLUMN.
    pub const ADD_COLUMN: u32 = 5;
    /// DROP COLUMN.
    pub const DROP_COLUMN: u32 = 6;
    /// TRUNCATE TABLE (`table_id` is the old id; the new TableInfo has the new one).
    pub const TRUNCATE_TABLE: u32 = 11;
    /// MODIFY COLUMN.
    pub const MODIFY_COLUMN: u32 = 12;
    /// RENAME TABLE.
    pub const RENAME_TABLE: u32 = 14;
    /// ADD PARTITION.
    pub const ADD_TABLE_PARTITION: u32 = 19;
    /// DROP PARTITION.
    pub const DROP_TABLE_PARTITION: u32 = 20;
    /// CREATE VIEW.
    pub const CREATE_VIEW: u32 = 21;
    /// TRUNCATE PARTITION.
    pub const TRUNCATE_TABLE_PARTITION: u32 = 23;
    /// DROP VIEW.
    pub const DROP_VIEW: u32 = 24;
    /// RECOVER TABLE.
    pub const RECOVER_TABLE: u32 = 25;
    /// RENAME TABLES (several at once).
    pub const RENAME_TABLES: u32 = 47;
    /// CREATE TABLES (a batch).
    pub const CREATE_TABLES: u32 = 60;
    /// A multi-schema change.
    pub const MULTI_SCHEMA_CHANGE: u32 = 61;
}

/// DDL job states (`Job.state`).
pub mod job_state {
    /// Running.
    pub const RUNNING: u32 = 1;
    /// Done: the change is in effect (what a schema tracker applies).
    pub const DONE: u32 = 4;
    /// Cancelled.
    pub const CANCELLED: u32 = 5;
    /// Synced (done and seen by every TiDB).
    pub const SYNCED: u32 = 6;
}

/// Deserializes JSON `null` as the type's default, as Go writes nil slices and strings.
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    de: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// A name as TiDB keeps it: the original spelling and its lowercase form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct CiStr {
    /// As written.
    #[serde(rename = "O")]
    pub o: String,
    /// Lowercase (what names are compared by).
    #[serde(rename = "L")]
    pub l: String,
}

impl CiStr {
    /// A name from its original spelling.
    pub fn new(name: &str) -> Self {
        Self { o: name.into(), l: name.to_lowercase() }
    }
}

impl<'de> Deserialize<'de> for CiStr {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bare(String),
            Pair {
                #[serde(rename = "O", default)]
                o: String,
                #[serde(rename = "L", default)]
                l: String,
            },
        }
        Ok(match Repr::deserialize(de)? {
            Repr::Bare(name) => Self::new(&name),
            Repr::Pair { o, l } => {
                let l = if l.is_empty() { o.to_lowercase() } else { l };
                Self { o, l }
            }
        })
    }
}

/// A column's type (`FieldType`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldType {
    /// The MySQL type code ([`tp`]).
    #[serde(rename = "Tp")]
    pub tp: u8,
    /// Flag bits ([`flag`]).
    #[serde(rename = "Flag")]
    pub flag: u64,
    /// Display width or length; -1 when unspecified.
    #[serde(rename = "Flen")]
    pub flen: i64,
    /// Scale of a DECIMAL, fsp of a time type; -1 when unspecified.
    #[serde(rename = "Decimal")]
    pub decimal: i64,
    /// Character set (`binary` for binary strings and non-string types).
    #[serde(rename = "Charset", deserialize_with = "null_default")]
    pub charset: String,
    /// Collation.
    #[serde(rename = "Collate", deserialize_with = "null_default")]
    pub collate: String,
    /// The members of an ENUM or SET.
    #[serde(rename = "Elems", deserialize_with = "null_default")]
    pub elems: Vec<String>,
}

impl FieldType {
    /// Whether the UNSIGNED flag is set.
    pub fn is_unsigned(&self) -> bool {
        self.flag & flag::UNSIGNED != 0
    }

    /// Whether NOT NULL is set.
    pub fn is_not_null(&self) -> bool {
        self.flag & flag::NOT_NULL != 0
    }

    /// Whether a string type holds bytes rather than text (collation or charset `binary`).
    pub fn is_binary_string(&self) -> bool {
        self.collate == "binary" || self.charset == "binary"
    }

    /// The fsp of a time type, 0..=6.
    pub fn fsp(&self) -> u8 {
        self.decimal.clamp(0, 6) as u8
    }
}

/// A column (`ColumnInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ColumnInfo {
    /// The column id (row values are keyed by it; never reused within a table).
    pub id: i64,
    /// The column name.
    pub name: CiStr,
    /// Position in the table's `cols`.
    pub offset: i64,
    /// The value rows written before the column existed have (a JSON string of the literal, or
    /// null).
    pub origin_default: serde_json::Value,
    /// `origin_default` of a BIT column, base64.
    pub origin_default_bit: Option<String>,
    /// The current default.
    pub default: serde_json::Value,
    /// The current default of a BIT column, base64.
    pub default_bit: Option<String>,
    /// The generation expression; empty for ordinary columns.
    #[serde(deserialize_with = "null_default")]
    pub generated_expr_string: String,
    /// Whether a generated column is stored (virtual ones are never in a row).
    pub generated_stored: bool,
    /// The type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// The schema state ([`state`]).
    pub state: u8,
    /// Comment.
    #[serde(deserialize_with = "null_default")]
    pub comment: String,
    /// Hidden (expression index helpers).
    pub hidden: bool,
    /// ColumnInfo version (1 and later: TIMESTAMP defaults are in UTC).
    pub version: u64,
}

impl ColumnInfo {
    /// Whether the column is generated and not stored: such a column is never in a row value
    /// and a change feed leaves it out.
    pub fn is_virtual(&self) -> bool {
        !self.generated_expr_string.is_empty() && !self.generated_stored
    }
}

/// One column of an index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexColumn {
    /// The column's name.
    pub name: CiStr,
    /// The column's position in the table's `cols`.
    pub offset: usize,
    /// Prefix length; -1 for the whole column.
    pub length: i64,
}

/// An index (`IndexInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexInfo {
    /// The index id.
    pub id: i64,
    /// The index name.
    pub idx_name: CiStr,
    /// Its columns, in order.
    #[serde(deserialize_with = "null_default")]
    pub idx_cols: Vec<IndexColumn>,
    /// The schema state.
    pub state: u8,
    /// UNIQUE.
    pub is_unique: bool,
    /// The primary key (of a clustered table, its columns make the common handle).
    pub is_primary: bool,
}

/// One partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionDefinition {
    /// The partition's physical table id (its rows' keys use it).
    pub id: i64,
    /// The partition's name.
    pub name: CiStr,
}

/// A table's partitioning (`PartitionInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionInfo {
    /// 1 range, 2 hash, 3 list, 4 key.
    #[serde(rename = "type")]
    pub kind: i64,
    /// The partitioning expression.
    #[serde(deserialize_with = "null_default")]
    pub expr: String,
    /// Whether the partitioning is in effect (only then are `definitions` live partitions).
    pub enable: bool,
    /// The live partitions.
    #[serde(deserialize_with = "null_default")]
    pub definitions: Vec<PartitionDefinition>,
    /// Partitions being added.
    #[serde(deserialize_with = "null_default")]
    pub adding_definitions: Vec<PartitionDefinition>,
    /// Partitions being dropped.
    #[serde(deserialize_with = "null_default")]
    pub dropping_definitions: Vec<PartitionDefinition>,
}

/// A table, view or sequence (`TableInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableInfo {
    /// The table id (the logical id of a partitioned table, whose rows use partition ids).
    pub id: i64,
    /// The table name.
    pub name: CiStr,
    /// Default character set.
    #[serde(deserialize_with = "null_default")]
    pub charset: String,
    /// Default collation.
    #[serde(deserialize_with = "null_default")]
    pub collate: String,
    /// Columns, in table order (including non-public ones in the middle of a change).
    #[serde(deserialize_with = "null_default")]
    pub cols: Vec<ColumnInfo>,
    /// Indexes.
    #[serde(deserialize_with = "null_default")]
    pub index_info: Vec<IndexInfo>,
    /// The schema state.
    pub state: u8,
    /// The integer primary key is the row's handle (and is not in the row value).
    pub pk_is_handle: bool,
    /// Clustered on a non-integer primary key: the handle is the key's columns.
    pub is_common_handle: bool,
    /// Version of the common handle layout.
    pub common_handle_version: u16,
    /// Comment.
    #[serde(deserialize_with = "null_default")]
    pub comment: String,
    /// The largest column id handed out.
    pub max_col_id: i64,
    /// The largest index id handed out.
    pub max_idx_id: i64,
    /// TSO of the last schema change.
    pub update_timestamp: u64,
    /// Partitioning, if any.
    pub partition: Option<PartitionInfo>,
    /// Set for views (which have no rows).
    pub view: Option<serde_json::Value>,
    /// Set for sequences (which have no rows).
    pub sequence: Option<serde_json::Value>,
    /// TableInfo version.
    pub version: u64,
    /// Per-table schema revision.
    pub revision: u64,
}

impl TableInfo {
    /// Parses TableInfo JSON as TiDB stores it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Schema(alloc::format!("TableInfo JSON: {e}")))
    }

    /// Whether this is a view or a sequence (neither has rows).
    pub fn has_rows(&self) -> bool {
        self.view.is_none() && self.sequence.is_none()
    }

    /// The physical table ids holding the rows: the partitions' when partitioned, else the
    /// table's own.
    pub fn physical_ids(&self) -> Vec<i64> {
        match &self.partition {
            Some(partition) if partition.enable => {
                partition.definitions.iter().map(|p| p.id).collect()
            }
            _ => alloc::vec![self.id],
        }
    }

    /// The primary key index, if the table has one.
    pub fn primary_index(&self) -> Option<&IndexInfo> {
        self.index_info.iter().find(|index| index.is_primary)
    }
}

/// A database (`DBInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DbInfo {
    /// The database id.
    pub id: i64,
    /// The database name.
    pub db_name: CiStr,
    /// Default character set.
    #[serde(deserialize_with = "null_default")]
    pub charset: String,
    /// Default collation.
    #[serde(deserialize_with = "null_default")]
    pub collate: String,
    /// The schema state.
    pub state: u8,
}

impl DbInfo {
    /// Parses DBInfo JSON as TiDB stores it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Schema(alloc::format!("DBInfo JSON: {e}")))
    }
}

/// What a finished job changed (`Job.binlog`, Go field names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryInfo {
    /// The schema version the job produced (0: the job changed nothing).
    #[serde(rename = "SchemaVersion")]
    pub schema_version: i64,
    /// The database after the change (database jobs).
    #[serde(rename = "DBInfo")]
    pub db_info: Option<DbInfo>,
    /// The table after the change (table jobs).
    #[serde(rename = "TableInfo")]
    pub table_info: Option<TableInfo>,
    /// Set by TiDB only once the job is synced; a tracker uses the commit ts of the job row.
    #[serde(rename = "FinishedTS")]
    pub finished_ts: u64,
    /// The tables of a batch job (CREATE TABLES, RENAME TABLES).
    #[serde(rename = "MultipleTableInfos", deserialize_with = "null_default")]
    pub multiple_table_infos: Vec<TableInfo>,
}

/// A DDL job (`Job`), as the `job_meta` column of `mysql.tidb_ddl_job` holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Job {
    /// The job id.
    pub id: i64,
    /// The action ([`action`]).
    #[serde(rename = "type")]
    pub action: u32,
    /// The database the job is in.
    pub schema_id: i64,
    /// The table it changes (the old id for TRUNCATE TABLE).
    pub table_id: i64,
    /// The database's name.
    #[serde(deserialize_with = "null_default")]
    pub schema_name: String,
    /// The table's name.
    #[serde(deserialize_with = "null_default")]
    pub table_name: String,
    /// The job's state ([`job_state`]).
    pub state: u32,
    /// The statement.
    #[serde(deserialize_with = "null_default")]
    pub query: String,
    /// What the job changed.
    pub binlog: HistoryInfo,
    /// The job's start ts.
    pub start_ts: u64,
    /// Arguments (an array in job version 1, an object in version 2).
    pub raw_args: serde_json::Value,
    /// The job format version.
    pub version: u64,
}

impl Job {
    /// Parses Job JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Schema(alloc::format!("DDL job JSON: {e}")))
    }
}
