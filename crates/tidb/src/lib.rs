//! TiDB's data in TiKV, decoded: keys, row values, column types and schema JSON.
//! `#![no_std]` + `alloc`, sans-IO.
//!
//! What a TiKV change feed delivers for a TiDB table is a raw key (`t{table}_r{handle}`) and row
//! values in one of two formats; what gives them meaning is the table's `TableInfo` JSON, kept
//! under TiDB's meta keys and changed by DDL jobs. This crate turns the bytes into typed rows:
//!
//! - [`key`]: record keys (int handles, common handles of clustered tables, partitions' ids),
//!   index keys, meta keys, the DDL job table's id;
//! - [`row`]: row formats v2 and v1; [`datum`]: flag-prefixed datums;
//! - [`value`]: every column type TiDB stores ([`Value`]), with [`decimal`], [`time`],
//!   [`json`] (binary JSON) and [`vector`];
//! - [`schema`]: `TableInfo`, `DBInfo` and DDL `Job` JSON;
//! - [`RowDecoder`]: a table's rows against its schema (value, then handle, then default);
//! - [`Catalog`]: databases and tables followed across DDL jobs, each row decoded by the schema
//!   in force when it was committed;
//! - [`Sequencer`]: a change feed's rows and DDL jobs in commit-ts order ([`TableEvent`]);
//! - [`render`]: rows as the JSON lines `kvfeed` prints.
//!
//! ```
//! use kvfeed_tidb::{RecordKey, RowDecoder, TableInfo, Value};
//!
//! let table = TableInfo::from_json(br#"{"id": 104, "name": {"O": "t", "L": "t"},
//!     "pk_is_handle": true, "cols": [
//!       {"id": 1, "name": "id", "state": 5, "type": {"Tp": 8, "Flag": 3}},
//!       {"id": 2, "name": "note", "state": 5,
//!        "type": {"Tp": 15, "Charset": "utf8mb4", "Collate": "utf8mb4_bin"}}]}"#).unwrap();
//! let decoder = RowDecoder::new(table).unwrap();
//! let key = RecordKey::decode(&[0x74, 0x80, 0, 0, 0, 0, 0, 0, 0x68, b'_', b'r',
//!                               0x80, 0, 0, 0, 0, 0, 0, 0x01]).unwrap();
//! // Row format v2: one not-null column (id 2) holding "hi".
//! let row = decoder.decode(&key, &[0x80, 0, 1, 0, 0, 0, 2, 2, 0, b'h', b'i']).unwrap().unwrap();
//! assert_eq!(row.get(0), Some(&Value::Int(1)));
//! assert_eq!(row.get(1), Some(&Value::Text("hi".into())));
//! ```
//!
//! Every decoder returns an [`Error`] on bad bytes, never panics; the `encode` feature adds the
//! writing half (what the simulator and the round-trip tests use). The I/O around
//! [`Sequencer`] (tables by name over a `kvfeed::Client`, the schema read from the meta keys at
//! the start ts and followed through the DDL job table) is the `kvfeed-tidb-watch` crate's
//! `Watcher`.

#![no_std]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod catalog;
pub mod codec;
pub mod datum;
pub mod decimal;
mod decode;
mod error;
pub mod json;
pub mod key;
pub mod render;
pub mod row;
pub mod schema;
mod sequence;
pub mod time;
pub mod value;
pub mod vector;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use catalog::{Catalog, SchemaChange};
pub use decode::{Row, RowDecoder};
pub use error::Error;
pub use key::{Handle, RecordKey};
pub use schema::{ColumnInfo, DbInfo, FieldType, Job, TableInfo};
pub use sequence::{
    DdlEvent, Output, RawChange, RowChange, Sequencer, Source, TableEvent, TableName, ddl_job_table,
};
pub use value::Value;
