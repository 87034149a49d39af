//! Region cache operations (arbitrary, possibly garbage, regions from PD; scans; invalidations;
//! NotLeader; send failures; stores) against a naive model, with the no-overlap invariant checked
//! after every step (`kvfeed_regioncache::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_regioncache::fuzzing::cache_ops(data));
