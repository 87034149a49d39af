//! The spill store: records round trips (buffered and direct writes), segments closing once
//! empty, an emptied current segment reused, refused records, and a model of live records.

use proptest::prelude::*;

use super::*;

fn store(segment_bytes: u64) -> SpillFiles {
    SpillFiles::new(std::env::temp_dir(), segment_bytes)
}

/// A record's bytes: a pattern of `len` bytes that depends on `seed`.
fn record(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8)).collect()
}

#[test]
fn records_come_back_as_written_small_and_large() {
    let mut files = store(SEGMENT_BYTES);
    let records: Vec<Vec<u8>> =
        [0, 1, 100, WRITE_BUFFER - 1, WRITE_BUFFER, 3 * WRITE_BUFFER + 7, 5]
            .iter()
            .enumerate()
            .map(|(i, &len)| record(i as u8, len))
            .collect();
    let refs: Vec<SpillRef> =
        records.iter().map(|bytes| files.append(&[bytes]).expect("append")).collect();
    let total: usize = records.iter().map(Vec::len).sum();
    assert_eq!(files.live_bytes(), total as u64);
    // Out of order, the buffered ones and the ones in the file alike.
    for index in [3, 0, 6, 5, 1, 4, 2] {
        assert_eq!(files.take(refs[index]).expect("take"), records[index], "record {index}");
    }
    assert_eq!(files.live_bytes(), 0);
    assert_eq!(files.segment_count(), 1, "the current segment stays open");
}

#[test]
fn parts_are_one_record() {
    let mut files = store(SEGMENT_BYTES);
    let at = files.append(&[b"value", b"", b"old"]).expect("append");
    assert_eq!(at.len(), 8);
    assert_eq!(files.take(at).expect("take"), b"valueold");
}

#[test]
fn a_segment_closes_once_its_records_are_gone() {
    let mut files = store(1000);
    let refs: Vec<SpillRef> =
        (0..10u8).map(|i| files.append(&[&record(i, 300)]).expect("append")).collect();
    // Three records fit a segment of 1000 bytes: four segments.
    assert_eq!(files.segment_count(), 4);
    for &at in &refs[..3] {
        files.take(at).expect("take");
    }
    assert_eq!(files.segment_count(), 3, "the first segment is closed");
    // Freeing without reading works the same way.
    for &at in &refs[3..6] {
        files.free(at);
    }
    assert_eq!(files.segment_count(), 2);
    for (i, &at) in refs.iter().enumerate().skip(6) {
        assert_eq!(files.take(at).expect("take"), record(i as u8, 300));
    }
    assert_eq!(files.segment_count(), 1);
    assert_eq!(files.live_bytes(), 0);
}

#[test]
fn an_emptied_current_segment_is_written_again_from_its_start() {
    let mut files = store(SEGMENT_BYTES);
    let first = files.append(&[&record(1, 2 * WRITE_BUFFER)]).expect("append");
    files.take(first).expect("take");
    let second = files.append(&[&record(2, 10)]).expect("append");
    assert_eq!((second.segment, second.offset), (first.segment, 0));
    assert_eq!(files.take(second).expect("take"), record(2, 10));
}

#[test]
fn a_record_above_4_gib_is_refused_without_being_written() {
    let mut files = store(SEGMENT_BYTES);
    let chunk = vec![0u8; 1 << 20];
    let parts: Vec<&[u8]> = (0..4097).map(|_| chunk.as_slice()).collect();
    let error = files.append(&parts).expect_err("too large");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(files.live_bytes(), 0);
    assert_eq!(files.segment_count(), 0, "no file was created");
}

#[test]
fn a_failed_write_stores_nothing_and_keeps_the_records_before_it() {
    let mut files = store(SEGMENT_BYTES);
    let small = files.append(&[&record(1, 100)]).expect("append");
    let large = files.append(&[&record(2, 2 * WRITE_BUFFER)]).expect("append");
    let buffered = files.append(&[&record(3, 100)]).expect("append");
    files.fail_writes = true;
    // A large record written directly, and a small one filling the buffer: both fail.
    assert!(files.append(&[&record(4, 2 * WRITE_BUFFER)]).is_err());
    assert!(files.append(&[&record(5, WRITE_BUFFER - 50)]).is_err());
    assert_eq!(files.live_bytes(), (200 + 2 * WRITE_BUFFER) as u64);
    files.fail_writes = false;
    let after = files.append(&[&record(6, WRITE_BUFFER - 50)]).expect("append");
    assert_eq!(after.offset, buffered.offset + 100, "the failed records left no bytes behind");
    assert_eq!(files.take(buffered).expect("take"), record(3, 100));
    assert_eq!(files.take(after).expect("take"), record(6, WRITE_BUFFER - 50));
    assert_eq!(files.take(large).expect("take"), record(2, 2 * WRITE_BUFFER));
    assert_eq!(files.take(small).expect("take"), record(1, 100));
    assert_eq!(files.live_bytes(), 0);
}

#[test]
fn a_missing_directory_is_an_error_at_the_first_record() {
    let mut files = SpillFiles::new(std::env::temp_dir().join("kvfeed-no-such-dir/x"), 1000);
    assert!(files.append(&[b"x"]).is_err());
}

#[derive(Clone, Debug)]
enum Op {
    Append { seed: u8, len: usize },
    Take(usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), prop_oneof![0..600usize, 0..(3 * WRITE_BUFFER)])
            .prop_map(|(seed, len)| Op::Append { seed, len }),
        2 => any::<usize>().prop_map(Op::Take),
        1 => any::<usize>().prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Against a model (the live records in a list): every record comes back as written, the
    /// live byte count is the model's, and the open segments are at most the ones holding a
    /// live record plus the current one.
    #[test]
    fn the_store_matches_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut files = store(1 << 20);
        let mut model: Vec<(SpillRef, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { seed, len } => {
                    let bytes = record(seed, len);
                    let at = files.append(&[&bytes]).expect("append");
                    model.push((at, bytes));
                }
                Op::Take(i) if !model.is_empty() => {
                    let (at, bytes) = model.swap_remove(i % model.len());
                    prop_assert_eq!(files.take(at).expect("take"), bytes);
                }
                Op::Free(i) if !model.is_empty() => {
                    let (at, _) = model.swap_remove(i % model.len());
                    files.free(at);
                }
                Op::Take(_) | Op::Free(_) => {}
            }
            let live: usize = model.iter().map(|(_, bytes)| bytes.len()).sum();
            prop_assert_eq!(files.live_bytes(), live as u64);
            let mut holding: Vec<u32> = model.iter().map(|(at, _)| at.segment).collect();
            holding.sort_unstable();
            holding.dedup();
            prop_assert!(files.segment_count() <= holding.len() + 1);
        }
    }
}
