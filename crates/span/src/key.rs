//! Raw and memcomparable-encoded keys, and TiKV's memcomparable bytes codec.
//!
//! TiKV and PD use two forms of the same user key, and mixing them up is a classic CDC bug:
//!
//! - [`RawKey`]: the key as the user wrote it. Row keys in CDC events and lock keys are raw.
//! - [`EncodedKey`]: the memcomparable encoding of a raw key (TiDB's `codec.EncodeBytes`): groups
//!   of 8 bytes, each padded with `0x00` and followed by a marker `0xFF - pad`. CDC request keys,
//!   PD region boundaries and every [`Span`](crate::Span) bound are encoded.
//!
//! The encoding preserves order: `a < b` as raw bytes if and only if `encode(a) < encode(b)`.
//! [`cmp_raw_with_encoded`] compares a raw key with an encoded one without allocating, which is
//! what a range filter on the event path wants.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

/// Bytes per group of the memcomparable encoding.
const GROUP: usize = 8;
/// The marker of a full group (no padding).
const FULL_MARKER: u8 = 0xFF;

/// A raw user key, as it appears in CDC event rows and in lock-resolution requests.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawKey(Box<[u8]>);

/// A memcomparable-encoded key, as in CDC requests, PD region boundaries and spans.
///
/// Constructing one from bytes does not validate them: PD boundaries are trusted to be encoded,
/// and only [`EncodedKey::decode`] needs well-formed input (it returns an error otherwise). The
/// empty key is the lowest key; spans give it a second meaning as an unbounded end.
///
/// Keys of up to [`EncodedKey::INLINE`] bytes (a TiDB record key with an integer handle is 27)
/// are stored inline, so ordered maps of keys compare them without chasing a pointer.
#[derive(Clone)]
pub struct EncodedKey(Repr);

/// The storage of an [`EncodedKey`]: inline when short, boxed otherwise.
#[derive(Clone)]
enum Repr {
    /// `buf[..len]` are the key bytes.
    Inline {
        len: u8,
        buf: [u8; EncodedKey::INLINE],
    },
    Heap(Box<[u8]>),
}

impl Default for EncodedKey {
    fn default() -> Self {
        Self(Repr::Inline { len: 0, buf: [0; Self::INLINE] })
    }
}

impl PartialEq for EncodedKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Inline buffers are zero-padded, so equal keys have equal buffers.
        if let (Repr::Inline { len: a_len, buf: a }, Repr::Inline { len: b_len, buf: b }) =
            (&self.0, &other.0)
        {
            return a_len == b_len && a == b;
        }
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for EncodedKey {}

impl PartialOrd for EncodedKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EncodedKey {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Inline buffers are zero-padded, and zero-padded strings compare like the strings
        // themselves except when one is the other plus zero bytes, which the length settles.
        // Two 16-byte integer comparisons replace a byte-wise `memcmp` call on the hot path of
        // ordered maps of keys.
        if let (Repr::Inline { len: a_len, buf: a }, Repr::Inline { len: b_len, buf: b }) =
            (&self.0, &other.0)
        {
            let (a_hi, a_lo) = halves(a);
            let (b_hi, b_lo) = halves(b);
            return a_hi.cmp(&b_hi).then(a_lo.cmp(&b_lo)).then(a_len.cmp(b_len));
        }
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// An inline buffer as two overlapping big-endian integers: bytes 0..16 and 14..30.
#[inline]
fn halves(buf: &[u8; EncodedKey::INLINE]) -> (u128, u128) {
    let mut hi = [0; 16];
    let mut lo = [0; 16];
    hi.copy_from_slice(&buf[..16]);
    lo.copy_from_slice(&buf[EncodedKey::INLINE - 16..]);
    (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
}

impl core::hash::Hash for EncodedKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// Why bytes are not a valid memcomparable encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a group (each group is 9 bytes).
    Truncated {
        /// Offset of the incomplete group.
        offset: usize,
    },
    /// A group's marker says it holds more than 8 padding bytes.
    BadMarker {
        /// Offset of the marker byte.
        offset: usize,
        /// The marker found.
        marker: u8,
    },
    /// A padding byte is not `0x00`.
    BadPadding {
        /// Offset of the offending byte.
        offset: usize,
    },
    /// Bytes follow the final group.
    TrailingBytes {
        /// Offset of the first byte after the final group.
        offset: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { offset } => {
                write!(f, "memcomparable key truncated in the group at {offset}")
            }
            Self::BadMarker { offset, marker } => {
                write!(f, "memcomparable key has marker {marker:#04x} at {offset}")
            }
            Self::BadPadding { offset } => {
                write!(f, "memcomparable key has non-zero padding at {offset}")
            }
            Self::TrailingBytes { offset } => {
                write!(f, "memcomparable key has bytes after its final group at {offset}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

impl RawKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The memcomparable encoding of this key.
    pub fn encode(&self) -> EncodedKey {
        EncodedKey::encode(&self.0)
    }
}

impl EncodedKey {
    /// The longest key stored inline (without a heap allocation).
    pub const INLINE: usize = 30;

    /// Wraps bytes that are already memcomparable-encoded (a PD boundary, a request key).
    pub fn from_encoded(bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        if bytes.len() <= Self::INLINE {
            let mut buf = [0; Self::INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            // `len` fits: it is at most INLINE.
            Self(Repr::Inline { len: bytes.len() as u8, buf })
        } else {
            Self(Repr::Heap(bytes.into()))
        }
    }

    /// The encoding of `raw`.
    pub fn encode(raw: &[u8]) -> Self {
        if encoded_len(raw.len()) <= Self::INLINE {
            let mut buf = [0; Self::INLINE];
            let mut len = 0;
            for (slot, byte) in buf.iter_mut().zip(encoded_bytes(raw)) {
                *slot = byte;
                len += 1;
            }
            Self(Repr::Inline { len, buf })
        } else {
            Self(Repr::Heap(encode(raw).into_boxed_slice()))
        }
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }

    /// Whether this is the empty key (the lowest key, or an unbounded end of a span).
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Decodes the raw key; malformed input gives an error, never a panic.
    pub fn decode(&self) -> Result<RawKey, DecodeError> {
        decode(self.as_bytes()).map(|raw| RawKey(raw.into_boxed_slice()))
    }

    /// The key's bytes, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Consumes the key, returning its bytes (copied out when stored inline).
    pub fn into_bytes(self) -> Box<[u8]> {
        match self.0 {
            Repr::Inline { len, buf } => buf[..usize::from(len)].into(),
            Repr::Heap(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for RawKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for EncodedKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for RawKey {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }
}

impl From<Vec<u8>> for RawKey {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into_boxed_slice())
    }
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raw:")?;
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for EncodedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enc:")?;
        write_hex(f, self.as_bytes())
    }
}

/// Writes `bytes` as upper-case hex, the form TiDB tools print keys in.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02X}"))
}

/// The length of the encoding of a raw key of `raw_len` bytes.
pub const fn encoded_len(raw_len: usize) -> usize {
    (raw_len / GROUP + 1) * (GROUP + 1)
}

/// Appends the memcomparable encoding of `raw` to `out`.
pub fn encode_into(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(raw.len()));
    let mut chunks = raw.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(FULL_MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(core::iter::repeat_n(0, pad));
    // `pad` is 1..=8, so the marker is 0xF7..=0xFE.
    out.push(FULL_MARKER - pad as u8);
}

/// The memcomparable encoding of `raw`.
pub fn encode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(raw, &mut out);
    out
}

/// Decodes one encoded key from the front of `input`, returning the raw key and the rest.
pub fn decode_prefix(input: &[u8]) -> Result<(Vec<u8>, &[u8]), DecodeError> {
    let mut raw = Vec::with_capacity(input.len() / (GROUP + 1) * GROUP);
    let mut offset = 0;
    loop {
        let Some(group) = input.get(offset..offset + GROUP + 1) else {
            return Err(DecodeError::Truncated { offset });
        };
        let marker = group[GROUP];
        let pad = usize::from(FULL_MARKER - marker);
        if pad > GROUP {
            return Err(DecodeError::BadMarker { offset: offset + GROUP, marker });
        }
        let data_len = GROUP - pad;
        raw.extend_from_slice(&group[..data_len]);
        if pad == 0 {
            offset += GROUP + 1;
            continue;
        }
        if let Some(bad) = group[data_len..GROUP].iter().position(|&b| b != 0) {
            return Err(DecodeError::BadPadding { offset: offset + data_len + bad });
        }
        return Ok((raw, &input[offset + GROUP + 1..]));
    }
}

/// Decodes a whole encoded key; bytes after the final group are an error.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let (raw, rest) = decode_prefix(input)?;
    if rest.is_empty() {
        Ok(raw)
    } else {
        Err(DecodeError::TrailingBytes { offset: input.len() - rest.len() })
    }
}

/// The bytes of the encoding of `raw`, produced lazily (no allocation).
pub fn encoded_bytes(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let len = raw.len();
    (0..encoded_len(len)).map(move |i| {
        let (group, at) = (i / (GROUP + 1), i % (GROUP + 1));
        if at < GROUP {
            raw.get(group * GROUP + at).copied().unwrap_or(0)
        } else {
            let filled = (len - group * GROUP).min(GROUP);
            // `GROUP - filled` is 0 for full groups and 1..=8 for the final one.
            FULL_MARKER - (GROUP - filled) as u8
        }
    })
}

/// Compares `encode(raw)` with `encoded` without building the encoding.
pub fn cmp_raw_with_encoded(raw: &[u8], encoded: &[u8]) -> Ordering {
    // Whole groups of the raw key compare as themselves followed by 0xFF; checking them
    // directly keeps the common case (long shared prefixes) fast.
    let full_groups = raw.len() / GROUP;
    for g in 0..full_groups {
        let enc = &encoded[(g * (GROUP + 1)).min(encoded.len())..];
        let raw_group = &raw[g * GROUP..(g + 1) * GROUP];
        let take = enc.len().min(GROUP + 1);
        let ord = raw_group.iter().copied().chain([FULL_MARKER]).cmp(enc[..take].iter().copied());
        if ord != Ordering::Equal {
            return ord;
        }
        if take < GROUP + 1 {
            // `enc` ended inside the group and compared equal so far: it is the shorter one.
            return Ordering::Greater;
        }
    }
    let start = full_groups * (GROUP + 1);
    let tail_raw = &raw[full_groups * GROUP..];
    encoded_bytes(tail_raw).cmp(encoded.get(start..).unwrap_or(&[]).iter().copied())
}

impl core::borrow::Borrow<[u8]> for EncodedKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}
