//! Differential fuzzing of the range lock against its model (`kvfeed_rangelock::fuzzing`).
#![no_main]

use kvfeed_rangelock::fuzzing::{Case, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| check(&case));
