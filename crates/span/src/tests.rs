//! Unit and property tests of the crate, table-driven where the original's tests were.
//!
//! The scenarios follow the reference specification of the original Go client: §4 (span math and
//! the memcomparable codec), §10 H (span helpers), and §11 item 17 (the quirks of the original's
//! span helpers, each shown absent here). Property tests live in `props`; they reuse the checks of
//! [`crate::fuzzing`].
//!
//! Two groups of the original's tests have no counterpart, as our API has nothing to test there:
//! §10 H item 28 (a hashable span with a zero-allocation string view: `Span` simply derives
//! `Hash` and `Eq` over its two bounds, and has no table id) and item 30 (`HashMap`, `SyncMap` and
//! `Set` wrappers keyed by span: callers use the standard maps directly). Item 29's `BtreeMap`
//! start-key-keyed overwrite is shown absent in `span::spans_differing_only_in_end_do_not_collide`;
//! its `FindHoles` cases run in `kvfeed-rangelock`'s tests, against the partition model there
//! (`RangeTsMap::unset_runs`, `Partition::runs`), as do the `rangeTsMap` scenarios (§3.2, §10 B).

use alloc::vec::Vec;

use crate::{EncodedKey, Span};

mod codec;
mod props;
mod span;
mod table;

/// The span `[start, end)` over encoded bytes (empty for an unbounded end); panics if empty.
fn sp(start: &[u8], end: &[u8]) -> Span {
    Span::from_bytes(start, end).unwrap_or_else(|e| panic!("bad test span: {e}"))
}

/// Bytes from hex, spaces allowed (test vectors are written as TiDB tools print keys).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length in {s:?}");
    digits
        .chunks(2)
        .map(|pair| {
            let text = core::str::from_utf8(pair).expect("hex is ascii");
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?} in {s:?}"))
        })
        .collect()
}

/// An encoded key from its bytes.
fn ek(bytes: &[u8]) -> EncodedKey {
    EncodedKey::from_encoded(bytes)
}

/// The example of the crate's README, kept compiling and passing here.
#[test]
fn readme_example() {
    use alloc::format;

    use crate::table;

    // The record span of TiDB table 8616, memcomparable-encoded as TiKV wants it.
    let span = table::table_span(8616);
    assert_eq!(
        format!("{span:?}"),
        "[7480000000000021FFA85F720000000000FA, 7480000000000021FFA85F730000000000FA)"
    );
    // Row keys in CDC events are raw: compare them with encoded bounds directly.
    assert!(span.contains_raw_key(&table::record_key(8616, 42)));
    assert!(!span.contains_raw_key(&table::record_key(8617, 42)));

    // An empty end is plus infinity.
    let rest = Span::from_bytes(span.start().as_bytes(), b"").unwrap();
    assert_eq!(span.intersect(&rest).unwrap(), span);
    assert!(Span::from_bytes(b"b", b"a").is_err());

    // Bounds are encoded keys; a sub-span of the table starts at one of its rows.
    let split = EncodedKey::encode(&table::record_key(8616, 1000));
    let tail = Span::new(split, span.end().clone()).unwrap();
    assert!(tail.is_sub_span(&span));
}
