//! Arbitrary `RangeTsMap` operations on the range lock's partition model, checked step by step
//! against a naive model (`kvfeed_rangelock::fuzzing::ts_map`).
#![no_main]

use kvfeed_rangelock::fuzzing::ts_map::{TsMapCase, check_case};

libfuzzer_sys::fuzz_target!(|case: TsMapCase| check_case(&case));
