//! Half-open key spans with explicit unbounded ends.
//!
//! A [`Span`] is `[start, end)` over [`EncodedKey`]s. An empty start means minus infinity and an
//! empty end means plus infinity, for every operation here: there is no helper that forgets the
//! convention (the original's `IsSubSpan` panicked on an empty end and its range lock compared
//! raw bytes). A `Span` is never empty: `start < end` is checked when it is built, so user input
//! gets a typed [`SpanError`] and code holding a `Span` never has to ask again.

use core::cmp::Ordering;
use core::fmt;
use core::ops::Bound;

use crate::key::{EncodedKey, cmp_raw_with_encoded, write_hex};

/// A non-empty half-open range of encoded keys, `[start, end)`.
///
/// Invariant: `start < end`, where an empty `start` is minus infinity and an empty `end` is plus
/// infinity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Span {
    start: EncodedKey,
    end: EncodedKey,
}

/// Why a span could not be built or combined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanError {
    /// `start >= end`: the span would be empty or inverted.
    Empty {
        /// The start given.
        start: EncodedKey,
        /// The end given.
        end: EncodedKey,
    },
    /// Two spans share no key (touching spans such as `[a, b)` and `[b, c)` included).
    Disjoint,
}

impl fmt::Display for SpanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty { start, end } => {
                write!(f, "span start {start:?} is not below its end {end:?}")
            }
            Self::Disjoint => write!(f, "spans do not overlap"),
        }
    }
}

impl core::error::Error for SpanError {}

/// Compares two span starts, an empty start being minus infinity.
pub fn cmp_start(a: &[u8], b: &[u8]) -> Ordering {
    a.cmp(b)
}

/// Compares two span ends, an empty end being plus infinity.
pub fn cmp_end(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// Whether a key (or a start) lies below an end, an empty end being plus infinity.
pub fn below_end(key: &[u8], end: &[u8]) -> bool {
    end.is_empty() || key < end
}

impl Span {
    /// Builds `[start, end)`; empty `start` is minus infinity and empty `end` plus infinity.
    pub fn new(start: EncodedKey, end: EncodedKey) -> Result<Self, SpanError> {
        if below_end(start.as_bytes(), end.as_bytes()) {
            Ok(Self { start, end })
        } else {
            Err(SpanError::Empty { start, end })
        }
    }

    /// Builds a span from encoded bound bytes.
    pub fn from_bytes(start: &[u8], end: &[u8]) -> Result<Self, SpanError> {
        Self::new(EncodedKey::from_encoded(start), EncodedKey::from_encoded(end))
    }

    /// The whole key space, `(-inf, +inf)`.
    pub fn full() -> Self {
        Self { start: EncodedKey::default(), end: EncodedKey::default() }
    }

    /// The start key (empty for minus infinity).
    pub fn start(&self) -> &EncodedKey {
        &self.start
    }

    /// The end key (empty for plus infinity).
    pub fn end(&self) -> &EncodedKey {
        &self.end
    }

    /// The start as a [`Bound`]: `Unbounded` for minus infinity.
    pub fn start_bound(&self) -> Bound<&[u8]> {
        if self.start.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Included(self.start.as_bytes())
        }
    }

    /// The end as a [`Bound`]: `Unbounded` for plus infinity.
    pub fn end_bound(&self) -> Bound<&[u8]> {
        if self.end.is_empty() { Bound::Unbounded } else { Bound::Excluded(self.end.as_bytes()) }
    }

    /// Whether the span starts at minus infinity.
    pub fn is_start_unbounded(&self) -> bool {
        self.start.is_empty()
    }

    /// Whether the span ends at plus infinity.
    pub fn is_end_unbounded(&self) -> bool {
        self.end.is_empty()
    }

    /// Splits the span into its bounds.
    pub fn into_bounds(self) -> (EncodedKey, EncodedKey) {
        (self.start, self.end)
    }

    /// Whether the encoded `key` lies in the span.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.start.as_bytes() <= key && below_end(key, self.end.as_bytes())
    }

    /// Whether the raw `key`, once encoded, lies in the span. Does not allocate.
    pub fn contains_raw_key(&self, raw: &[u8]) -> bool {
        (self.start.is_empty() || cmp_raw_with_encoded(raw, self.start.as_bytes()).is_ge())
            && (self.end.is_empty() || cmp_raw_with_encoded(raw, self.end.as_bytes()).is_lt())
    }

    /// Whether the two spans share at least one key.
    pub fn overlaps(&self, other: &Span) -> bool {
        below_end(self.start.as_bytes(), other.end.as_bytes())
            && below_end(other.start.as_bytes(), self.end.as_bytes())
    }

    /// The keys in both spans, or [`SpanError::Disjoint`].
    pub fn intersect(&self, other: &Span) -> Result<Span, SpanError> {
        if !self.overlaps(other) {
            return Err(SpanError::Disjoint);
        }
        let start = core::cmp::max_by(&self.start, &other.start, |a, b| {
            cmp_start(a.as_bytes(), b.as_bytes())
        });
        let end =
            core::cmp::min_by(&self.end, &other.end, |a, b| cmp_end(a.as_bytes(), b.as_bytes()));
        Ok(Span { start: start.clone(), end: end.clone() })
    }

    /// Whether every key of `self` lies in `parent`.
    pub fn is_sub_span(&self, parent: &Span) -> bool {
        cmp_start(parent.start.as_bytes(), self.start.as_bytes()).is_le()
            && cmp_end(self.end.as_bytes(), parent.end.as_bytes()).is_le()
    }

    /// Whether every key of `self` lies in one of `parents`.
    pub fn is_sub_span_of_any<'a>(&self, parents: impl IntoIterator<Item = &'a Span>) -> bool {
        parents.into_iter().any(|parent| self.is_sub_span(parent))
    }
}

/// Spans order by start, then by end (plus infinity last): a strict total order, unlike the
/// original's `Span.Less`, which mixed table ids and keys.
impl Ord for Span {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_start(self.start.as_bytes(), other.start.as_bytes())
            .then_with(|| cmp_end(self.end.as_bytes(), other.end.as_bytes()))
    }
}

impl PartialOrd for Span {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl AsRef<Span> for Span {
    fn as_ref(&self) -> &Span {
        self
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        if self.start.is_empty() {
            f.write_str("-inf")?
        } else {
            write_hex(f, self.start.as_bytes())?
        }
        f.write_str(", ")?;
        if self.end.is_empty() {
            f.write_str("+inf")?
        } else {
            write_hex(f, self.end.as_bytes())?
        }
        f.write_str(")")
    }
}
