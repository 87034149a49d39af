//! Unit tests of the codec: the byte vectors of the reference, the decoder's rules, and
//! round trips against the crate's own writers.

mod catalog;
mod decode;
mod props;
mod sequence;
mod vectors;

use alloc::vec::Vec;

/// Bytes from hex (spaces allowed).
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex: {text}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}
