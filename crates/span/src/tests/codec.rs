//! The memcomparable codec (§4): test vectors, group boundaries, malformed input.

use alloc::format;
use alloc::vec::Vec;
use core::cmp::Ordering::{self, Equal, Greater, Less};

use super::hex;
use crate::key::{
    self, DecodeError, cmp_raw_with_encoded, decode, decode_prefix, encode, encode_into,
    encoded_bytes, encoded_len,
};
use crate::{EncodedKey, RawKey, table};

#[test]
fn table_8616_test_vector() {
    // §4: the test vector of the original, via `table::table_span`.
    let span = table::table_span(8616);
    assert_eq!(span.start().as_bytes(), hex("7480000000000021FFA85F720000000000FA"));
    assert_eq!(span.end().as_bytes(), hex("7480000000000021FFA85F730000000000FA"));
    assert_eq!(
        format!("{span:?}"),
        "[7480000000000021FFA85F720000000000FA, 7480000000000021FFA85F730000000000FA)"
    );
    // The same bytes through the codec: `t{8616}_r` is 11 raw bytes, so two groups.
    let raw_start = table::record_prefix(8616);
    assert_eq!(raw_start, hex("74 80000000000021A8 5F72"));
    assert_eq!(encode(&raw_start), span.start().as_bytes());
    assert_eq!(decode(span.end().as_bytes()).unwrap(), hex("74 80000000000021A8 5F73"));
}

#[test]
fn encode_vectors() {
    #[track_caller]
    fn check(raw: &[u8], encoded: &str) {
        let encoded = hex(encoded);
        assert_eq!(encode(raw), encoded, "encode({raw:02X?})");
        assert_eq!(encoded_len(raw.len()), encoded.len(), "encoded_len({})", raw.len());
        assert!(encoded_bytes(raw).eq(encoded.iter().copied()), "encoded_bytes({raw:02X?})");
        let mut appended = b"prefix".to_vec();
        encode_into(raw, &mut appended);
        assert_eq!(appended[6..], encoded, "encode_into appends");
        assert_eq!(decode(&encoded).unwrap(), raw, "decode");
        assert_eq!(RawKey::from(raw).encode().as_bytes(), encoded, "RawKey::encode");
        assert_eq!(EncodedKey::encode(raw).decode().unwrap().as_bytes(), raw, "EncodedKey::decode");
        assert_eq!(cmp_raw_with_encoded(raw, &encoded), Equal, "cmp_raw_with_encoded");
    }
    // The empty key and every multiple of 8 end with a group of padding only: 8 zeros + F7.
    check(b"", "0000000000000000 F7");
    check(b"\x00", "0000000000000000 F8");
    check(b"\x01", "0100000000000000 F8");
    check(b"1234567", "31323334353637 00 FE");
    check(b"12345678", "3132333435363738 FF 0000000000000000 F7");
    check(b"123456789", "3132333435363738 FF 3900000000000000 F8");
    check(&[0xFF; 8], "FFFFFFFFFFFFFFFF FF 0000000000000000 F7");
    check(&[0x00; 8], "0000000000000000 FF 0000000000000000 F7");
    check(b"0123456789abcdef", "3031323334353637 FF 3839616263646566 FF 0000000000000000 F7");
    check(b"0123456789abcdefg", "3031323334353637 FF 3839616263646566 FF 6700000000000000 F8");
}

#[test]
fn decode_errors() {
    #[track_caller]
    fn check(input: &str, error: DecodeError) {
        let input = hex(input);
        assert_eq!(decode(&input), Err(error), "decode({input:02X?})");
        assert_eq!(EncodedKey::from_encoded(&input[..]).decode(), Err(error));
        if !matches!(error, DecodeError::TrailingBytes { .. }) {
            assert_eq!(decode_prefix(&input).map(|_| ()), Err(error), "decode_prefix");
        }
    }
    use DecodeError::{BadMarker, BadPadding, TrailingBytes, Truncated};
    check("", Truncated { offset: 0 });
    check("00", Truncated { offset: 0 });
    check("0000000000000000", Truncated { offset: 0 });
    check("3132333435363738 FF", Truncated { offset: 9 });
    check("3132333435363738 FF 0000", Truncated { offset: 9 });
    check("3132333435363738 FF 3132333435363738 FF 00", Truncated { offset: 18 });
    check("0000000000000000 F6", BadMarker { offset: 8, marker: 0xF6 });
    check("0000000000000000 00", BadMarker { offset: 8, marker: 0x00 });
    check("3132333435363738 FF 0000000000000000 80", BadMarker { offset: 17, marker: 0x80 });
    check("0100000000000100 F8", BadPadding { offset: 6 });
    check("0000000000000001 F7", BadPadding { offset: 7 });
    check("3132333435363738 FF 31FF000000000000 F8", BadPadding { offset: 10 });
    check("0000000000000000 F7 00", TrailingBytes { offset: 9 });
    check("3132333435363738 FF 0000000000000000 F7 FF", TrailingBytes { offset: 18 });
    check("3132333435363700 FE 3132333435363700 FE", TrailingBytes { offset: 9 });
}

#[test]
fn decode_prefix_returns_the_rest() {
    let mut input = encode(b"123456789");
    input.extend_from_slice(b"rest");
    let (raw, rest) = decode_prefix(&input).unwrap();
    assert_eq!((raw.as_slice(), rest), (&b"123456789"[..], &b"rest"[..]));
    // Two keys back to back, as in a composite key.
    let mut two = encode(b"ab");
    encode_into(b"", &mut two);
    let (first, rest) = decode_prefix(&two).unwrap();
    assert_eq!((first.as_slice(), decode(rest).unwrap().as_slice()), (&b"ab"[..], &b""[..]));
}

#[test]
fn decode_error_display_names_the_offset() {
    let cases = [
        (DecodeError::Truncated { offset: 9 }, "memcomparable key truncated in the group at 9"),
        (
            DecodeError::BadMarker { offset: 8, marker: 0xF6 },
            "memcomparable key has marker 0xf6 at 8",
        ),
        (DecodeError::BadPadding { offset: 6 }, "memcomparable key has non-zero padding at 6"),
        (
            DecodeError::TrailingBytes { offset: 18 },
            "memcomparable key has bytes after its final group at 18",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(format!("{error}"), text);
    }
}

#[test]
fn cmp_raw_with_encoded_table() {
    #[track_caller]
    fn check(raw: &[u8], encoded: &[u8], expected: Ordering) {
        assert_eq!(cmp_raw_with_encoded(raw, encoded), expected, "{raw:02X?} vs {encoded:02X?}");
        assert_eq!(encode(raw).as_slice().cmp(encoded), expected, "the encodings disagree");
    }
    let enc = |raw: &[u8]| encode(raw);
    // Against well-formed encodings: the order of the raw keys.
    check(b"", &enc(b""), Equal);
    check(b"", &enc(b"\x00"), Less);
    check(b"a", &enc(b"a"), Equal);
    check(b"a", &enc(b"b"), Less);
    check(b"a\x00", &enc(b"a"), Greater);
    check(b"1234567", &enc(b"12345678"), Less);
    check(b"12345678", &enc(b"1234567"), Greater);
    check(b"12345678", &enc(b"12345678\x00"), Less);
    check(b"123456789", &enc(b"12345678"), Greater);
    check(b"12345678abcdefgh", &enc(b"12345678abcdefgg"), Greater);
    // Against arbitrary bytes (a span bound need not be a whole encoding).
    check(b"", b"", Greater);
    check(b"12345678", b"", Greater);
    check(b"12345678", &hex("3132333435363738"), Greater);
    check(b"12345678", &hex("3132333435363738 FF"), Greater);
    check(b"12345678", &hex("3132333435363738 FE"), Greater);
    check(b"12345678", &hex("3132333435363739"), Less);
    check(b"1234567", &hex("31323334353637 FF"), Less);
    check(b"1234567", &hex("31323334353637 00 FE 00"), Less);
    check(b"\xFF", &hex("FF"), Greater);
    check(b"\xFF", &hex("FF01"), Less);
    check(b"12345678", &hex("3132333435363738 FF 0000000000000000 F7 00"), Less);
}

#[test]
fn encoding_preserves_order() {
    // A sorted list of raw keys around the group boundaries; their encodings sort the same way.
    let keys: [&[u8]; 12] = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x01",
        b"1234567",
        b"1234567\x00",
        b"12345678",
        b"12345678\x00",
        b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
    ];
    let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode(k)).collect();
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate() {
            assert_eq!(i.cmp(&j), a.cmp(b), "the list is sorted");
            assert_eq!(encoded[i].cmp(&encoded[j]), i.cmp(&j), "{a:02X?} vs {b:02X?}");
            assert_eq!(cmp_raw_with_encoded(a, &encoded[j]), i.cmp(&j), "{a:02X?} vs enc {b:02X?}");
        }
    }
}

#[test]
fn key_wrappers() {
    let raw = RawKey::new(&b"abc"[..]);
    assert_eq!(raw.as_bytes(), b"abc");
    assert_eq!(raw.as_ref(), b"abc");
    assert_eq!(RawKey::from(b"abc".to_vec()), raw);
    assert_eq!(format!("{raw:?}"), "raw:616263");
    let enc = raw.encode();
    assert_eq!(format!("{enc:?}"), "enc:6162630000000000FA");
    assert!(!enc.is_empty() && EncodedKey::default().is_empty());
    assert_eq!(enc.decode(), Ok(raw));
    assert_eq!(&*enc.clone().into_bytes(), enc.as_bytes());
    assert_eq!(key::encode(b"abc"), enc.as_ref());
    // `Borrow<[u8]>` lets ordered maps of keys be searched by byte slices.
    let set: alloc::collections::BTreeSet<EncodedKey> = [enc.clone()].into();
    assert!(set.contains(enc.as_bytes()));
}

#[test]
fn encoded_key_storage_is_invisible() {
    // Short keys are stored inline and long ones on the heap: bytes, order, equality and hashing
    // (which must agree with `Borrow<[u8]>`) do not depend on it.
    use core::hash::{BuildHasher, Hash, Hasher};
    let hasher = std::collections::hash_map::RandomState::new();
    let hash = |value: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        let mut h = hasher.build_hasher();
        value(&mut h);
        h.finish()
    };
    let keys: Vec<Vec<u8>> = (0..=2 * EncodedKey::INLINE).map(|n| (0..n as u8).collect()).collect();
    for bytes in &keys {
        let key = EncodedKey::from_encoded(bytes);
        assert_eq!(key.as_bytes(), bytes.as_slice());
        assert_eq!(key.to_vec(), *bytes);
        assert_eq!(&*key.clone().into_bytes(), bytes.as_slice());
        assert_eq!(key.is_empty(), bytes.is_empty());
        assert_eq!(hash(&|h| key.hash(h)), hash(&|h| bytes.as_slice().hash(h)), "{bytes:?}");
        for other in &keys {
            let other_key = EncodedKey::from_encoded(other);
            assert_eq!(key.cmp(&other_key), bytes.cmp(other), "{bytes:?} vs {other:?}");
            assert_eq!(key == other_key, bytes == other);
        }
    }
    // `EncodedKey::encode` fills either storage with the same bytes as `key::encode`.
    for n in 0..40u8 {
        let raw: Vec<u8> = (0..n).map(|b| b.wrapping_mul(37)).collect();
        assert_eq!(EncodedKey::encode(&raw).as_bytes(), encode(&raw), "raw length {n}");
    }
    let set: std::collections::HashSet<EncodedKey> =
        keys.iter().map(EncodedKey::from_encoded).collect();
    assert!(keys.iter().all(|k| set.contains(k.as_slice())));
}
