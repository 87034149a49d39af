//! DECIMAL values and MySQL's binary decimal form ("MyDecimal bin"), as TiDB stores them.
//!
//! The binary form of a decimal with precision P and scale F groups digits in nines: the
//! integer part's leading `(P-F) mod 9` digits in as few bytes as they need, then whole 9-digit
//! words (4 bytes each, big-endian), the same for the fraction (its partial group last, holding
//! the fraction's trailing digits). A negative number has every byte inverted; then the top bit
//! of the first byte is flipped, so it reads 1 for non-negative numbers.
//!
//! [`Decimal`] keeps the digits exactly (no float on the way), which is what a change feed owes
//! its consumers.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::Error;
use crate::codec::Reader;

/// The widest DECIMAL TiDB accepts (digits in all).
pub const MAX_PRECISION: u8 = 65;
/// The largest DECIMAL scale TiDB accepts.
pub const MAX_SCALE: u8 = 30;

const DIGITS_PER_WORD: usize = 9;
const WORD_BYTES: usize = 4;
/// Bytes needed for a group of 0..=9 digits.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POW10: [u32; 10] =
    [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

/// An exact decimal number: a sign, the integer digits (no leading zeros) and the fraction
/// digits (exactly `scale` of them).
///
/// Invariant: `int` and `frac` hold values 0..=9; `int` has no leading zero; zero is never
/// negative.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    int: Vec<u8>,
    frac: Vec<u8>,
}

impl Decimal {
    /// Reads a decimal stored as `precision byte, scale byte, binary form` (a v1 datum or a v2
    /// DECIMAL column).
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, Error> {
        let start = reader.offset();
        let precision = reader.u8("decimal precision")?;
        let scale = reader.u8("decimal scale")?;
        if precision == 0 || precision > MAX_PRECISION || scale > precision || scale > MAX_SCALE {
            return Err(Error::invalid("decimal precision and scale", start));
        }
        let size = bin_size(precision, scale);
        let bytes = reader.take(size, "decimal")?;
        Self::from_bin(bytes, precision, scale, start + 2)
    }

    /// Decodes the binary form of a DECIMAL(`precision`, `scale`); `offset` places errors.
    pub fn from_bin(bytes: &[u8], precision: u8, scale: u8, offset: usize) -> Result<Self, Error> {
        let (precision, scale) = (usize::from(precision), usize::from(scale));
        let int_digits = precision - scale;
        let size = bin_size(precision as u8, scale as u8);
        if bytes.len() != size || size == 0 {
            return Err(Error::invalid("decimal (length does not match its precision)", offset));
        }
        let negative = bytes[0] & 0x80 == 0;
        let mask = if negative { 0xFF } else { 0 };
        let byte = |i: usize| {
            let b = bytes[i] ^ mask;
            if i == 0 { b ^ 0x80 } else { b }
        };
        let mut pos = 0;
        let mut group = |digits: usize| -> Result<Vec<u8>, Error> {
            let len = DIG2BYTES[digits];
            let mut value = 0u32;
            for i in pos..pos + len {
                value = (value << 8) | u32::from(byte(i));
            }
            if digits > 0 && value >= POW10[digits] {
                return Err(Error::invalid("decimal (a group out of range)", offset + pos));
            }
            pos += len;
            Ok((0..digits).rev().map(|d| ((value / POW10[d]) % 10) as u8).collect())
        };
        let mut int = group(int_digits % DIGITS_PER_WORD)?;
        for _ in 0..int_digits / DIGITS_PER_WORD {
            int.extend(group(DIGITS_PER_WORD)?);
        }
        let mut frac = Vec::with_capacity(scale);
        for _ in 0..scale / DIGITS_PER_WORD {
            frac.extend(group(DIGITS_PER_WORD)?);
        }
        frac.extend(group(scale % DIGITS_PER_WORD)?);
        Ok(Self::normalized(negative, int, frac))
    }

    fn normalized(negative: bool, mut int: Vec<u8>, frac: Vec<u8>) -> Self {
        let leading = int.iter().take_while(|&&d| d == 0).count();
        int.drain(..leading);
        let zero = int.is_empty() && frac.iter().all(|&d| d == 0);
        Self { negative: negative && !zero, int, frac }
    }

    /// Zero, with no fraction digits.
    pub fn zero() -> Self {
        Self { negative: false, int: Vec::new(), frac: Vec::new() }
    }

    /// Parses `[-]digits[.digits]` (how TiDB writes DECIMAL defaults in a schema).
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |s: &str| -> Option<Vec<u8>> {
            s.bytes().map(|b| b.is_ascii_digit().then(|| b - b'0')).collect()
        };
        Some(Self::normalized(negative, digits(int)?, digits(frac)?))
    }

    /// Whether the number is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Digits after the point.
    pub fn scale(&self) -> usize {
        self.frac.len()
    }

    /// Digits before the point (0 for a number below one).
    pub fn int_digits(&self) -> usize {
        self.int.len()
    }

    /// The number with exactly `scale` fraction digits: padded with zeros, or rounded half away
    /// from zero as TiDB does when a stored scale exceeds the column's.
    pub fn rescale(&self, scale: usize) -> Self {
        let mut int = self.int.clone();
        let mut frac = self.frac.clone();
        if frac.len() <= scale {
            frac.resize(scale, 0);
            return Self::normalized(self.negative, int, frac);
        }
        let round_up = frac[scale] >= 5;
        frac.truncate(scale);
        if round_up {
            let mut carry = true;
            for digit in frac.iter_mut().rev().chain(int.iter_mut().rev()) {
                if *digit == 9 {
                    *digit = 0;
                } else {
                    *digit += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                int.insert(0, 1);
            }
        }
        Self::normalized(self.negative, int, frac)
    }

    /// The binary form as DECIMAL(`precision`, `scale`), or `None` when the number does not fit.
    pub fn to_bin(&self, precision: u8, scale: u8) -> Option<Vec<u8>> {
        if precision == 0 || precision > MAX_PRECISION || scale > precision || scale > MAX_SCALE {
            return None;
        }
        let (precision, scale) = (usize::from(precision), usize::from(scale));
        let int_digits = precision - scale;
        if self.int.len() > int_digits || self.frac.len() > scale {
            return None;
        }
        let mut int = alloc::vec![0u8; int_digits - self.int.len()];
        int.extend_from_slice(&self.int);
        let mut frac = self.frac.clone();
        frac.resize(scale, 0);
        let mut out = Vec::with_capacity(bin_size(precision as u8, scale as u8));
        let mut put = |digits: &[u8]| {
            let value = digits.iter().fold(0u32, |v, &d| v * 10 + u32::from(d));
            let len = DIG2BYTES[digits.len()];
            out.extend_from_slice(&value.to_be_bytes()[WORD_BYTES - len..]);
        };
        let lead = int_digits % DIGITS_PER_WORD;
        put(&int[..lead]);
        for word in int[lead..].chunks(DIGITS_PER_WORD) {
            put(word);
        }
        for word in frac.chunks(DIGITS_PER_WORD) {
            put(word);
        }
        if let Some(first) = out.first_mut() {
            *first ^= 0x80;
        }
        if self.negative {
            for byte in &mut out {
                *byte = !*byte;
            }
        }
        Some(out)
    }

    /// The smallest (precision, scale) that holds the number, as TiDB picks for a value whose
    /// column gives none.
    pub fn natural_precision(&self) -> (u8, u8) {
        let scale = self.frac.len().min(usize::from(MAX_SCALE));
        let precision = (self.int.len() + scale).clamp(1, usize::from(MAX_PRECISION));
        (precision as u8, scale as u8)
    }
}

/// Bytes of the binary form of DECIMAL(`precision`, `scale`) (`scale <= precision`).
pub fn bin_size(precision: u8, scale: u8) -> usize {
    let int_digits = usize::from(precision.saturating_sub(scale));
    let scale = usize::from(scale);
    int_digits / DIGITS_PER_WORD * WORD_BYTES
        + DIG2BYTES[int_digits % DIGITS_PER_WORD]
        + scale / DIGITS_PER_WORD * WORD_BYTES
        + DIG2BYTES[scale % DIGITS_PER_WORD]
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(self.int.len() + self.frac.len() + 3);
        if self.negative {
            text.push('-');
        }
        if self.int.is_empty() {
            text.push('0');
        }
        text.extend(self.int.iter().map(|&d| char::from(b'0' + d)));
        if !self.frac.is_empty() {
            text.push('.');
            text.extend(self.frac.iter().map(|&d| char::from(b'0' + d)));
        }
        f.write_str(&text)
    }
}
