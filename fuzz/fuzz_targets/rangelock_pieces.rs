//! Differential fuzzing of the range lock's piece index against a `BTreeMap` partition
//! (`kvfeed_rangelock::fuzzing::pieces`).
#![no_main]

use kvfeed_rangelock::fuzzing::pieces::{Case, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| check(&case));
