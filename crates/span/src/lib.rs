//! Key and span math for TiKV change-data clients, `#![no_std]` + `alloc`.
//!
//! - [`RawKey`] and [`EncodedKey`] keep the two forms of a TiKV key apart; [`key`] holds the
//!   memcomparable codec (decoding malformed bytes gives a [`DecodeError`], never a panic).
//! - [`Span`] is a non-empty half-open key range with explicit unbounded ends, with intersection,
//!   containment and ordering that honour plus and minus infinity everywhere.
//! - [`table`] builds TiDB record keys and table spans.
//!
//! ```
//! use kvfeed_span::{Span, table};
//!
//! let table = table::table_span(8616);
//! assert_eq!(format!("{table:?}"), "[7480000000000021FFA85F720000000000FA, 7480000000000021FFA85F730000000000FA)");
//! let row = table::record_key(8616, 42);
//! assert!(table.contains_raw_key(&row));
//! let rest = Span::from_bytes(table.start().as_bytes(), &[]).unwrap();
//! assert_eq!(table.intersect(&rest).unwrap(), table);
//! ```
//!
//! The crate has no features, no dependencies and no I/O; it builds for `wasm32-unknown-unknown`.

#![no_std]
#![forbid(unsafe_code)]
// Items not reachable from the crate root say so (`pub(crate)`).
#![warn(unreachable_pub)]
// no_std honesty: what core or alloc provides is imported from there.
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod key;
mod span;
pub mod table;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use key::{DecodeError, EncodedKey, RawKey};
pub use span::{Span, SpanError, below_end, cmp_end, cmp_start};
