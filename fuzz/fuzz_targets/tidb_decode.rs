//! TiDB's keys, datums, rows (against a table of every column type), binary JSON, decimals and
//! schema JSON on arbitrary bytes: no panic, and what decodes stays consistent
//! (`kvfeed_tidb::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_tidb::fuzzing::decode(data));
