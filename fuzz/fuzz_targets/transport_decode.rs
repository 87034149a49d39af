//! Arbitrary bytes as a `ChangeDataEvent` frame through decode and demultiplexing: never a panic,
//! and the same rows, events and batches as a plain prost decode
//! (`kvfeed_transport::fuzzing::transport_decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_transport::fuzzing::transport_decode(data));
