//! Arbitrary `RangeTsMap` operations checked step by step against a naive model
//! (`kvfeed_span::fuzzing`).
#![no_main]

use kvfeed_span::fuzzing::{TsMapCase, span_partition};

libfuzzer_sys::fuzz_target!(|case: TsMapCase| span_partition(&case));
