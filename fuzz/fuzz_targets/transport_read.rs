//! Arbitrary bytes as a snapshot read's answer (`KvScan`, `KvBatchGet`) through the conversion
//! of its pairs: never a panic, and each pair a value, a lock or a failure as the bytes say
//! (`kvfeed_transport::fuzzing::transport_read`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvfeed_transport::fuzzing::transport_read(data));
