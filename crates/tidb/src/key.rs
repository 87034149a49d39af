//! TiDB's keys in their raw form (as CDC events carry them): record keys, index keys and the
//! meta keys that hold the schema.
//!
//! - Record key: `t` + comparable table id + `_r` + handle; an int handle is a comparable i64
//!   (exactly 8 bytes), a common handle (clustered non-int primary key) is the primary key's
//!   columns as key datums.
//! - Index key: `t` + table id + `_i` + comparable index id + key datums.
//! - Meta key: `m` + memcomparable key name + a type flag as 8 big-endian bytes (`s` string,
//!   `h` hash field, `H` hash meta, `L` list meta, `l` list element), then the field
//!   (memcomparable) or the list index (comparable i64).
//!
//! Keys of a keyspace (API v2) start with `x` and a 3-byte keyspace id; [`strip_keyspace`]
//! removes it. Partitions store their rows under their own physical table id.

use alloc::vec::Vec;

use crate::Error;
use crate::codec::{Reader, encode_int};
use crate::datum::Datum;

/// The table id of `mysql.tidb_ddl_job`, the system table whose rows are DDL jobs.
pub const DDL_JOB_TABLE_ID: i64 = 0xFFFF_FFFF_FFFF - 1;
/// The table id of `mysql.tidb_ddl_history`.
pub const DDL_HISTORY_TABLE_ID: i64 = 0xFFFF_FFFF_FFFF - 3;

const TABLE_PREFIX: u8 = b't';
const META_PREFIX: u8 = b'm';
const KEYSPACE_PREFIX: u8 = b'x';
const KEYSPACE_PREFIX_LEN: usize = 4;

/// The handle of a row: the int in the key, or the primary key's datums of a clustered table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Handle {
    /// The `_tidb_rowid` or the integer primary key (an UNSIGNED key's bits, read as i64).
    Int(i64),
    /// The primary key's columns as key datums, in primary key order.
    Common(Vec<u8>),
}

impl Handle {
    /// The datums of a common handle (an int handle gives its one integer).
    pub fn datums(&self) -> Result<Vec<Datum>, Error> {
        match self {
            Self::Int(i) => Ok(alloc::vec![Datum::Int(*i)]),
            Self::Common(bytes) => Datum::read_all(bytes, 11),
        }
    }
}

/// A decoded record key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// The physical table id (a partition's own id for partitioned tables).
    pub table_id: i64,
    /// The row's handle.
    pub handle: Handle,
}

impl RecordKey {
    /// Decodes a raw record key (a keyspace prefix is stripped first).
    pub fn decode(raw: &[u8]) -> Result<Self, Error> {
        let raw = strip_keyspace(raw);
        let mut reader = Reader::new(raw);
        let (table_id, sep) = table_and_separator(&mut reader)?;
        if sep != *b"_r" {
            return Err(Error::NotA { what: "record key (no `_r` after the table id)" });
        }
        let rest = reader.rest();
        let handle = if rest.len() == 8 {
            Handle::Int(reader.comparable_int("int handle")?)
        } else if rest.is_empty() {
            return Err(Error::truncated("record key handle", reader.offset()));
        } else {
            // Check that the handle is well-formed datums, so a decoded key is a usable one.
            Datum::read_all(rest, reader.offset())?;
            Handle::Common(rest.into())
        };
        Ok(Self { table_id, handle })
    }

    /// The raw key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19);
        out.push(TABLE_PREFIX);
        out.extend_from_slice(&encode_int(self.table_id));
        out.extend_from_slice(b"_r");
        match &self.handle {
            Handle::Int(i) => out.extend_from_slice(&encode_int(*i)),
            Handle::Common(bytes) => out.extend_from_slice(bytes),
        }
        out
    }
}

/// A decoded index key.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexKey {
    /// The table id.
    pub table_id: i64,
    /// The index id (TiDB's temporary indexes of a running ADD INDEX have a high bit set).
    pub index_id: i64,
    /// The index columns' datums, then the handle's when the index is not unique or holds a
    /// NULL.
    pub datums: Vec<Datum>,
}

impl IndexKey {
    /// Decodes a raw index key (a keyspace prefix is stripped first).
    pub fn decode(raw: &[u8]) -> Result<Self, Error> {
        let raw = strip_keyspace(raw);
        let mut reader = Reader::new(raw);
        let (table_id, sep) = table_and_separator(&mut reader)?;
        if sep != *b"_i" {
            return Err(Error::NotA { what: "index key (no `_i` after the table id)" });
        }
        let index_id = reader.comparable_int("index id")?;
        let datums = Datum::read_all(reader.rest(), reader.offset())?;
        Ok(Self { table_id, index_id, datums })
    }
}

fn table_and_separator(reader: &mut Reader<'_>) -> Result<(i64, [u8; 2]), Error> {
    if reader.u8("table key")? != TABLE_PREFIX {
        return Err(Error::NotA { what: "table key (no leading `t`)" });
    }
    let table_id = reader.comparable_int("table id")?;
    let sep = reader.array::<2>("table key separator")?;
    Ok((table_id, sep))
}

/// `raw` without a keyspace prefix (`x` and a 3-byte keyspace id), if it has one.
pub fn strip_keyspace(raw: &[u8]) -> &[u8] {
    match raw.first() {
        Some(&KEYSPACE_PREFIX) if raw.len() >= KEYSPACE_PREFIX_LEN => &raw[KEYSPACE_PREFIX_LEN..],
        _ => raw,
    }
}

/// The table id of any table key (record or index), or `None` for other keys.
pub fn table_id_of(raw: &[u8]) -> Option<i64> {
    kvfeed_span::table::table_id_of(strip_keyspace(raw))
}

/// The raw record range `[t{id}_r, t{id}_s)` of a table or partition.
pub fn record_range(table_id: i64) -> (Vec<u8>, Vec<u8>) {
    let start = kvfeed_span::table::record_prefix(table_id);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = b's';
    }
    (start, end)
}

/// The kinds of meta key (`structure` in TiDB).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// A string value (`SchemaVersionKey`, `NextGlobalID`, `Diff:{version}`).
    String {
        /// The key name.
        key: Vec<u8>,
    },
    /// One field of a hash (`DBs` / `DB:{id}`, `DB:{id}` / `Table:{id}`).
    HashField {
        /// The hash's name.
        key: Vec<u8>,
        /// The field.
        field: Vec<u8>,
    },
    /// A hash's meta record (TiDB 5.1 and older).
    HashMeta {
        /// The hash's name.
        key: Vec<u8>,
    },
    /// A list's meta record.
    ListMeta {
        /// The list's name.
        key: Vec<u8>,
    },
    /// One element of a list (`DDLJobList` of TiDB before 6.2).
    ListElement {
        /// The list's name.
        key: Vec<u8>,
        /// The element's index.
        index: i64,
    },
}

const STRING_FLAG: u64 = b's' as u64;
const HASH_FLAG: u64 = b'h' as u64;
const HASH_META_FLAG: u64 = b'H' as u64;
const LIST_META_FLAG: u64 = b'L' as u64;
const LIST_FLAG: u64 = b'l' as u64;

impl MetaKey {
    /// Decodes a raw meta key (a keyspace prefix is stripped first).
    pub fn decode(raw: &[u8]) -> Result<Self, Error> {
        let raw = strip_keyspace(raw);
        let mut reader = Reader::new(raw);
        if reader.u8("meta key")? != META_PREFIX {
            return Err(Error::NotA { what: "meta key (no leading `m`)" });
        }
        let key = reader.memcomparable_bytes("meta key name")?;
        let at = reader.offset();
        let out = match reader.u64_be("meta key type")? {
            STRING_FLAG => Self::String { key },
            HASH_FLAG => Self::HashField { key, field: reader.memcomparable_bytes("hash field")? },
            HASH_META_FLAG => Self::HashMeta { key },
            LIST_META_FLAG => Self::ListMeta { key },
            LIST_FLAG => Self::ListElement { key, index: reader.comparable_int("list index")? },
            _ => return Err(Error::invalid("meta key type", at)),
        };
        reader.finish("meta key")?;
        Ok(out)
    }

    /// The raw key.
    pub fn encode(&self) -> Vec<u8> {
        let (key, flag) = match self {
            Self::String { key } => (key, STRING_FLAG),
            Self::HashField { key, .. } => (key, HASH_FLAG),
            Self::HashMeta { key } => (key, HASH_META_FLAG),
            Self::ListMeta { key } => (key, LIST_META_FLAG),
            Self::ListElement { key, .. } => (key, LIST_FLAG),
        };
        let mut out = meta_prefix(key, flag);
        match self {
            Self::HashField { field, .. } => kvfeed_span::key::encode_into(field, &mut out),
            Self::ListElement { index, .. } => out.extend_from_slice(&encode_int(*index)),
            _ => {}
        }
        out
    }
}

fn meta_prefix(key: &[u8], flag: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + kvfeed_span::key::encoded_len(key.len()) + 8);
    out.push(META_PREFIX);
    kvfeed_span::key::encode_into(key, &mut out);
    out.extend_from_slice(&flag.to_be_bytes());
    out
}

/// The raw range holding every field of the hash `key`: `[prefix, prefix + 1)`.
pub fn hash_range(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let start = meta_prefix(key, HASH_FLAG);
    let end = meta_prefix(key, HASH_FLAG + 1);
    (start, end)
}

/// The name of the hash of database `id`'s tables, `DB:{id}`; also the field of that database
/// in the `DBs` hash.
pub fn db_key(db_id: i64) -> Vec<u8> {
    alloc::format!("DB:{db_id}").into_bytes()
}

/// The field of table `id` in its database's hash, `Table:{id}`.
pub fn table_field(table_id: i64) -> Vec<u8> {
    alloc::format!("Table:{table_id}").into_bytes()
}

/// The id in a `DB:{id}` name, if it is one.
pub fn parse_db_key(name: &[u8]) -> Option<i64> {
    parse_id(name, b"DB:")
}

/// The id in a `Table:{id}` field, if it is one.
pub fn parse_table_field(field: &[u8]) -> Option<i64> {
    parse_id(field, b"Table:")
}

fn parse_id(text: &[u8], prefix: &[u8]) -> Option<i64> {
    core::str::from_utf8(text.strip_prefix(prefix)?).ok()?.parse().ok()
}

/// The name of the hash of every database, `DBs`.
pub const DBS_KEY: &[u8] = b"DBs";
/// The name of the string holding the current schema version.
pub const SCHEMA_VERSION_KEY: &[u8] = b"SchemaVersionKey";
