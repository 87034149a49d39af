//! Shared fixtures for kvfeed's criterion benchmarks (`benches/*.rs`).
//!
//! Every benchmark group measures kvfeed beside a baseline in the same run, so the figures can be
//! compared on a shared, noisy machine. Run them with `cargo xtask bench [AREA]`.

use kvfeed_span::{EncodedKey, table};

/// The encoded key of row `i` of table 1: a realistic ~20-byte TiDB record key.
pub fn row_key(i: u64) -> EncodedKey {
    EncodedKey::encode(&table::record_key(1, i as i64))
}
