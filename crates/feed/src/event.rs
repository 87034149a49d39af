//! What a subscription delivers: rows in domain terms.

use bytes::Bytes;

/// The change a row makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The key now holds `value`.
    Put,
    /// The key was deleted.
    Delete,
}

/// One committed change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowEvent {
    /// Put or delete.
    pub op: Op,
    /// The raw key (not memcomparable-encoded), as the user wrote it.
    pub key: Bytes,
    /// The new value (empty for a delete).
    pub value: Bytes,
    /// The value before the transaction, if the key had one.
    pub old_value: Option<Bytes>,
    /// The transaction's start ts.
    pub start_ts: u64,
    /// The transaction's commit ts.
    pub commit_ts: u64,
}
