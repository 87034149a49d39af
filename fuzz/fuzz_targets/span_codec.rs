//! The memcomparable codec on arbitrary bytes: decoding never panics and round-trips, encoding
//! round-trips and preserves order, raw/encoded comparisons agree (`kvfeed_span::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_span::fuzzing::span_codec(data));
