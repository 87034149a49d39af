//! The fuzz entry point of the codec and the checks it runs.
//!
//! Compiled under `cfg(fuzzing)`, which cargo-fuzz sets (the targets in `fuzz/fuzz_targets` are
//! one-line calls into this module), and under `cfg(test)`, where proptest drives the very same
//! checks. Every function here panics with a description of the first divergence it finds. This
//! module is not part of the crate's API.
//!
//! [`span_codec`] checks the memcomparable codec and the raw/encoded comparisons on arbitrary
//! bytes.

use crate::Span;
use crate::key::{self, DecodeError};

/// Checks the codec on arbitrary bytes:
///
/// - as an encoding: decoding never panics; an `Ok` re-encodes to the input exactly; an `Err`
///   points at the offending byte; `decode_prefix` agrees with `decode`;
/// - as a raw key: encoding has the announced length, matches the lazy [`key::encoded_bytes`],
///   and decodes back;
/// - split into two keys `a` and `b` (at a point the first byte picks): encoding preserves their
///   order, [`key::cmp_raw_with_encoded`] agrees with comparing the encodings (also against `b`
///   taken as arbitrary encoded bytes), and [`Span::contains_raw_key`] agrees with
///   [`Span::contains_key`] of the encoding.
pub fn span_codec(data: &[u8]) {
    // Arbitrary bytes as an encoding.
    let decoded = key::decode(data);
    match &decoded {
        Ok(raw) => assert_eq!(
            key::encode(raw),
            data,
            "decode({data:02X?}) accepted the input but re-encoding {raw:02X?} differs"
        ),
        Err(error) => check_decode_error(data, *error),
    }
    match key::decode_prefix(data) {
        Ok((raw, rest)) => {
            let mut again = key::encode(&raw);
            again.extend_from_slice(rest);
            assert_eq!(again, data, "decode_prefix({data:02X?}) lost or invented bytes");
            match &decoded {
                Ok(whole) => {
                    assert!(rest.is_empty() && *whole == raw, "decode and decode_prefix disagree")
                }
                Err(error) => assert_eq!(
                    *error,
                    DecodeError::TrailingBytes { offset: data.len() - rest.len() },
                    "decode_prefix({data:02X?}) succeeded, so decode can only complain of trailing bytes"
                ),
            }
        }
        Err(error) => {
            assert_eq!(decoded, Err(error), "decode and decode_prefix disagree on {data:02X?}")
        }
    }

    // Arbitrary bytes as a raw key.
    let encoded = key::encode(data);
    assert_eq!(encoded.len(), key::encoded_len(data.len()), "encoded_len of {data:02X?}");
    assert!(key::encoded_bytes(data).eq(encoded.iter().copied()), "encoded_bytes of {data:02X?}");
    assert_eq!(key::decode(&encoded).as_deref(), Ok(data), "round trip of {data:02X?}");
    assert_eq!(key::cmp_raw_with_encoded(data, &encoded), core::cmp::Ordering::Equal);

    // Two keys.
    let (a, b) = split(data);
    let (enc_a, enc_b) = (key::encode(a), key::encode(b));
    assert_eq!(
        enc_a.cmp(&enc_b),
        a.cmp(b),
        "encoding does not preserve the order of {a:02X?} and {b:02X?}"
    );
    assert_eq!(
        key::cmp_raw_with_encoded(a, &enc_b),
        a.cmp(b),
        "cmp_raw_with_encoded({a:02X?}, encode({b:02X?}))"
    );
    assert_eq!(
        key::cmp_raw_with_encoded(a, b),
        enc_a.as_slice().cmp(b),
        "cmp_raw_with_encoded({a:02X?}, {b:02X?}) with arbitrary encoded bytes"
    );
    let (start, end) = split(b);
    if let Ok(span) = Span::from_bytes(start, end) {
        assert_eq!(
            span.contains_raw_key(a),
            span.contains_key(&enc_a),
            "contains_raw_key({a:02X?}) on {span:?}"
        );
    }
}

/// Checks that a decode error points at the byte it describes.
fn check_decode_error(data: &[u8], error: DecodeError) {
    const GROUP: usize = 9;
    let ok = match error {
        DecodeError::Truncated { offset } => offset % GROUP == 0 && offset + GROUP > data.len(),
        DecodeError::BadMarker { offset, marker } => {
            offset % GROUP == GROUP - 1 && data.get(offset) == Some(&marker) && marker < 0xF7
        }
        DecodeError::BadPadding { offset } => data.get(offset).is_some_and(|&b| b != 0),
        DecodeError::TrailingBytes { offset } => {
            offset < data.len() && key::decode(&data[..offset]).is_ok()
        }
    };
    assert!(ok, "decode({data:02X?}) gave {error:?}, which does not describe the input");
}

/// Splits `data` after its first byte at a point that byte picks (both halves may be empty).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&at, rest)) => rest.split_at(usize::from(at).min(rest.len())),
        None => (&[], &[]),
    }
}
