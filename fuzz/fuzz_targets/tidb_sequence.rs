//! The TiDB change feed's ordering core on arbitrary change streams: hostile job rows and row
//! values, resolved ts of every source in any order; no panic, and events stay in commit-ts
//! order behind strictly increasing resolved ts (`kvfeed_tidb::fuzzing::sequence`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_tidb::fuzzing::sequence(data));
