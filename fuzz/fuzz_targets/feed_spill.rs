//! Arbitrary bytes as a script of appends, takes and frees on one prewrite spill store, against
//! a model: every record comes back as written (`kvfeed::fuzzing::spill_files`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed::fuzzing::spill_files(data));
