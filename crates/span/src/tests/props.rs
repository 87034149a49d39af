//! Property tests.
//!
//! Every run is deterministic: the RNG seed is fixed (`RngSeed::Fixed`, so the `PROPTEST_RNG_SEED`
//! variable cannot change it either), failures are not persisted to files, and shrinking is
//! bounded. A failure prints the minimal input; rerunning reproduces it exactly. Case counts are
//! set per property below and keep the whole suite to a few seconds in debug builds.

use alloc::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::Span;
use crate::fuzzing;
use crate::key::{cmp_raw_with_encoded, decode, encode};

/// The seed of every property below (any fixed value would do).
const SEED: u64 = 0x6b76_6665_6564;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Short keys over a few byte values, so that spans collide, touch and nest.
fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&[0x00u8, 0x01, 0x61, 0x62, 0xFE, 0xFF][..]), 0..4)
}

/// Any byte string, with lengths around the 8-byte group boundaries.
fn raw_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        prop::collection::vec(prop::sample::select(&[0x00u8, 0x01, 0xFE, 0xFF][..]), 0..20),
    ]
}

/// A span over small keys (either bound may be unbounded).
fn small_span() -> impl Strategy<Value = Span> {
    (small_key(), small_key()).prop_filter_map("empty span", |(a, b)| Span::from_bytes(&a, &b).ok())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn intersection_commutes_and_holds_exactly_the_common_keys(
        a in small_span(),
        b in small_span(),
        samples in prop::collection::vec(small_key(), 0..8),
    ) {
        let ab = a.intersect(&b);
        prop_assert_eq!(&ab, &b.intersect(&a));
        prop_assert_eq!(ab.is_ok(), a.overlaps(&b));
        // The bounds themselves and their neighbours are the interesting keys.
        let mut keys = samples;
        for bound in [a.start(), a.end(), b.start(), b.end()] {
            keys.push(bound.as_bytes().to_vec());
            keys.push([bound.as_bytes(), &[0]].concat());
        }
        for key in &keys {
            let in_both = a.contains_key(key) && b.contains_key(key);
            match &ab {
                Ok(both) => prop_assert_eq!(both.contains_key(key), in_both, "key {:02X?}", key),
                Err(_) => prop_assert!(!in_both, "disjoint spans share {:02X?}", key),
            }
        }
        if let Ok(both) = &ab {
            prop_assert!(both.is_sub_span(&a) && both.is_sub_span(&b));
        }
    }

    #[test]
    fn sub_span_and_order_agree_with_bounds(a in small_span(), b in small_span()) {
        let inside = a.is_sub_span(&b);
        prop_assert_eq!(inside, a.intersect(&b).as_ref() == Ok(&a));
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a.cmp(&b).is_eq(), a == b);
    }

    #[test]
    fn encoding_preserves_order_and_round_trips(a in raw_key(), b in raw_key()) {
        let (ea, eb) = (encode(&a), encode(&b));
        prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
        prop_assert_eq!(decode(&ea), Ok(a.clone()));
        prop_assert_eq!(cmp_raw_with_encoded(&a, &eb), a.cmp(&b));
        prop_assert_eq!(cmp_raw_with_encoded(&b, &ea), b.cmp(&a));
    }

    #[test]
    fn cmp_raw_with_arbitrary_encoded_bytes(a in raw_key(), b in raw_key()) {
        prop_assert_eq!(cmp_raw_with_encoded(&a, &b), encode(&a).as_slice().cmp(&b[..]));
    }

    #[test]
    fn contains_raw_key_agrees_with_the_encoding(
        start in raw_key(),
        end in raw_key(),
        raw in raw_key(),
        unbounded in 0..4u8,
    ) {
        let start = if unbounded & 1 == 0 { encode(&start) } else { Vec::new() };
        let end = if unbounded & 2 == 0 { encode(&end) } else { Vec::new() };
        if let Ok(span) = Span::from_bytes(&start, &end) {
            prop_assert_eq!(span.contains_raw_key(&raw), span.contains_key(&encode(&raw)));
        }
    }

    #[test]
    fn decode_of_any_bytes_is_ok_or_err(data in prop::collection::vec(any::<u8>(), 0..40)) {
        // Ok round-trips, Err points at the right byte, and the rest of the fuzz target's checks.
        fuzzing::span_codec(&data);
    }

    #[test]
    fn decode_of_near_valid_bytes(raw in raw_key(), at in any::<usize>(), byte in any::<u8>(), cut in 0..3usize) {
        // Mostly well-formed input with one byte changed, or cut short, or extended.
        let mut data = encode(&raw);
        let at = at % data.len();
        match cut {
            0 => data[at] = byte,
            1 => data.truncate(at),
            _ => data.push(byte),
        }
        fuzzing::span_codec(&data);
    }
}

/// Byte strings around the inline limit of `EncodedKey` (30 bytes), rich in zero bytes, so that
/// the padded integer comparison of inline keys meets its corner cases.
fn key_near_inline_limit() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&[0x00u8, 0x01, 0x7F, 0x80, 0xFF][..]), 0..34)
}

proptest! {
    #![proptest_config(config(2048))]

    /// `EncodedKey` orders exactly like its bytes, inline or boxed, and equality agrees.
    #[test]
    fn encoded_key_order_is_byte_order(a in key_near_inline_limit(), b in key_near_inline_limit()) {
        let (ka, kb) = (crate::EncodedKey::from_encoded(&a), crate::EncodedKey::from_encoded(&b));
        prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        prop_assert_eq!(ka == kb, a == b);
        // A key and the same bytes with zeros appended differ, and the shorter sorts first.
        let mut longer = a.clone();
        longer.push(0);
        prop_assert!(ka < crate::EncodedKey::from_encoded(&longer));
    }
}
