//! The one error type of the codec: what was being read, where, and why it is not valid.
//!
//! Every decoder in this crate takes bytes from a TiKV peer or a TiDB schema, so none of them
//! panics on bad input: each failure is an [`Error`] naming the structure being read and, for
//! byte formats, the offset (within the value or key handed to the decoder) where it went wrong.

use alloc::string::String;
use core::fmt;

/// Why bytes (or a schema) could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside `what`.
    Truncated {
        /// The structure being read (for example "row v2 offsets").
        what: &'static str,
        /// Offset where `what` started or where more bytes were needed.
        offset: usize,
    },
    /// The bytes at `offset` are not a valid `what`.
    Invalid {
        /// The structure being read.
        what: &'static str,
        /// Offset of the offending bytes.
        offset: usize,
    },
    /// A datum flag this codec does not know.
    UnknownFlag {
        /// The flag byte.
        flag: u8,
        /// Its offset.
        offset: usize,
    },
    /// Bytes follow a complete `what`.
    TrailingBytes {
        /// The structure that ended early.
        what: &'static str,
        /// Offset of the first unexpected byte.
        offset: usize,
    },
    /// A key that is not of the expected kind (a record key, an index key, a meta key).
    NotA {
        /// The kind expected.
        what: &'static str,
    },
    /// A column's bytes do not fit its type in the schema.
    Column {
        /// The column's id.
        id: i64,
        /// What is wrong, from the inner decoder.
        reason: alloc::boxed::Box<Error>,
    },
    /// The schema itself is unusable (bad JSON, a column type TiDB never writes, a missing
    /// primary key column).
    Schema(String),
}

impl Error {
    pub(crate) fn truncated(what: &'static str, offset: usize) -> Self {
        Self::Truncated { what, offset }
    }

    pub(crate) fn invalid(what: &'static str, offset: usize) -> Self {
        Self::Invalid { what, offset }
    }

    pub(crate) fn column(id: i64, reason: Error) -> Self {
        Self::Column { id, reason: alloc::boxed::Box::new(reason) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, offset } => write!(f, "{what} truncated at byte {offset}"),
            Self::Invalid { what, offset } => write!(f, "invalid {what} at byte {offset}"),
            Self::UnknownFlag { flag, offset } => {
                write!(f, "unknown datum flag {flag:#04x} at byte {offset}")
            }
            Self::TrailingBytes { what, offset } => {
                write!(f, "bytes after the end of {what} at byte {offset}")
            }
            Self::NotA { what } => write!(f, "not {what}"),
            Self::Column { id, reason } => write!(f, "column {id}: {reason}"),
            Self::Schema(reason) => write!(f, "unusable schema: {reason}"),
        }
    }
}

impl core::error::Error for Error {}
