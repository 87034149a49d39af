//! A table's rows decoded against its `TableInfo`: the visible columns in table order, each
//! taken from the row value, else from the key's handle, else from the schema's default.
//!
//! The order is TiDB's own (and TiCDC's): a column in the value wins (a clustered primary key
//! column with a new collation is stored in the key as a sort key, which cannot be turned back
//! into text, so TiDB also writes it into the value); an integer primary key of a `pk_is_handle`
//! table is the key's handle; a common handle's columns are decoded from the key; a column added
//! after the row was written takes its origin default, or NULL, or its type's zero value.
//! Virtual generated columns and columns in the middle of a schema change are not visible.

use alloc::vec::Vec;

use crate::key::{Handle, RecordKey};
use crate::row::RowValue;
use crate::schema::{ColumnInfo, TableInfo, flag, state};
use crate::value::{self, Value};
use crate::{Error, datum::Datum};

/// Where a table's handle comes from.
#[derive(Clone, Debug)]
enum HandleColumns {
    /// A hidden `_tidb_rowid`: no visible column.
    RowId,
    /// The integer primary key (an index into `visible`).
    Int(usize),
    /// The primary key's columns, in key order (indexes into `visible`).
    Common(Vec<usize>),
}

/// Decodes the rows of one table (all its partitions) at one schema version.
#[derive(Clone, Debug)]
pub struct RowDecoder {
    table: TableInfo,
    /// Indexes into `table.cols` of the visible columns, in table order.
    visible: Vec<usize>,
    handle: HandleColumns,
}

/// A decoded row: one value per visible column of its decoder (in the decoder's column order),
/// or only the handle's columns for a row known by its key alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    values: Vec<Option<Value>>,
}

impl Row {
    /// The value of the `i`-th visible column, if the row holds it.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).and_then(Option::as_ref)
    }

    /// `(column index, value)` of the columns the row holds, in column order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.values.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
    }

    /// Whether every visible column is known (false for a key-only image).
    pub fn is_complete(&self) -> bool {
        self.values.iter().all(Option::is_some)
    }
}

impl RowDecoder {
    /// A decoder for `table`; fails when the schema is unusable (a primary key naming a column
    /// the table lacks, a pk-is-handle table without an integer primary key).
    pub fn new(table: TableInfo) -> Result<Self, Error> {
        let visible: Vec<usize> = table
            .cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state == state::PUBLIC && !c.is_virtual())
            .map(|(i, _)| i)
            .collect();
        let position = |name: &str| {
            visible.iter().position(|&i| table.cols[i].name.l == name).ok_or_else(|| {
                Error::Schema(alloc::format!(
                    "table {}: primary key column {name} is not a visible column",
                    table.id
                ))
            })
        };
        let handle = if table.is_common_handle {
            let Some(primary) = table.primary_index() else {
                return Err(Error::Schema(alloc::format!(
                    "table {}: clustered but has no primary index",
                    table.id
                )));
            };
            let cols =
                primary.idx_cols.iter().map(|c| position(&c.name.l)).collect::<Result<_, _>>()?;
            HandleColumns::Common(cols)
        } else if table.pk_is_handle {
            let pk =
                visible.iter().position(|&i| table.cols[i].field_type.flag & flag::PRI_KEY != 0);
            let Some(pk) = pk else {
                return Err(Error::Schema(alloc::format!(
                    "table {}: pk_is_handle but no primary key column",
                    table.id
                )));
            };
            HandleColumns::Int(pk)
        } else {
            HandleColumns::RowId
        };
        Ok(Self { table, visible, handle })
    }

    /// The schema this decoder reads by.
    pub fn table(&self) -> &TableInfo {
        &self.table
    }

    /// The visible columns, in table order (a [`Row`]'s values follow it).
    pub fn columns(&self) -> impl ExactSizeIterator<Item = &ColumnInfo> + '_ {
        self.visible.iter().map(|&i| &self.table.cols[i])
    }

    /// The `i`-th visible column.
    pub fn column(&self, i: usize) -> Option<&ColumnInfo> {
        self.visible.get(i).map(|&c| &self.table.cols[c])
    }

    /// Decodes a row from its raw key and value; `Ok(None)` for an empty value (no row: a
    /// delete, or an insert's missing old value).
    pub fn decode(&self, key: &RecordKey, value: &[u8]) -> Result<Option<Row>, Error> {
        self.check_key(key)?;
        if value.is_empty() {
            return Ok(None);
        }
        let row = RowValue::parse(value)?;
        let mut handle: Option<Vec<Datum>> = None;
        let mut values = Vec::with_capacity(self.visible.len());
        for (i, column) in self.columns().enumerate() {
            let value = match value::from_cell(column, row.get(column.id))? {
                Some(value) => value,
                None => match self.handle_value(i, column, key, &mut handle)? {
                    Some(value) => value,
                    None => value::missing_value(column)?,
                },
            };
            values.push(Some(value));
        }
        Ok(Some(Row { values }))
    }

    /// The columns the key alone gives (the handle's), for a delete that carries no old value.
    pub fn decode_key(&self, key: &RecordKey) -> Result<Row, Error> {
        self.check_key(key)?;
        let mut handle = None;
        let mut values = Vec::with_capacity(self.visible.len());
        for (i, column) in self.columns().enumerate() {
            values.push(self.handle_value(i, column, key, &mut handle)?);
        }
        Ok(Row { values })
    }

    /// Column `i`'s value from the key, if the handle holds it; `datums` caches the decoded
    /// common handle.
    fn handle_value(
        &self,
        i: usize,
        column: &ColumnInfo,
        key: &RecordKey,
        datums: &mut Option<Vec<Datum>>,
    ) -> Result<Option<Value>, Error> {
        match (&self.handle, &key.handle) {
            (HandleColumns::Int(pk), Handle::Int(handle)) if *pk == i => {
                Ok(Some(if column.field_type.is_unsigned() {
                    Value::Uint(*handle as u64)
                } else {
                    Value::Int(*handle)
                }))
            }
            (HandleColumns::Common(cols), Handle::Common(_)) => {
                let Some(position) = cols.iter().position(|&c| c == i) else { return Ok(None) };
                if datums.is_none() {
                    *datums = Some(key.handle.datums()?);
                }
                let datum = datums.as_ref().and_then(|d| d.get(position));
                let Some(datum) = datum else {
                    return Err(Error::invalid(
                        "common handle (fewer columns than the primary key)",
                        11,
                    ));
                };
                value::from_datum(column, datum).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Fails when the key's handle is not of the table's kind.
    fn check_key(&self, key: &RecordKey) -> Result<(), Error> {
        match (&self.handle, &key.handle) {
            (HandleColumns::Int(_) | HandleColumns::RowId, Handle::Common(_)) => Err(Error::NotA {
                what: "record key with an int handle (the table is not clustered)",
            }),
            (HandleColumns::Common(_), Handle::Int(_)) => Err(Error::NotA {
                what: "record key with a common handle (the table is clustered)",
            }),
            _ => Ok(()),
        }
    }
}
