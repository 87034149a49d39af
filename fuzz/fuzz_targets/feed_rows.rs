//! Arbitrary bytes as a script of rows and resolved-ts advances through one region's row
//! pipeline: never a panic, and every delivered row in span, above the start ts and above the
//! region's resolved ts (`kvfeed::fuzzing::region_rows`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed::fuzzing::region_rows(data));
