//! An ordered partition of a span into pieces that each carry a value: the plain model of the
//! range lock's piece index.
//!
//! [`Partition`] is the structure behind the original's `rangeTsMap` and span maps, on a
//! `BTreeMap`: the span is cut into contiguous pieces, each keyed by its start and running to the
//! next piece's start (or the span's end). Lookups, splits and range replacements cost
//! `O(log n + k)` for `n` pieces and `k` pieces touched. [`super::pieces`] checks the lock's own
//! B+tree ([`crate::pieces`]) against it. [`RangeTsMap`] builds the original's set/unset/min-ts
//! map on top of it, with typed errors where the original panicked; [`super::ts_map`] checks it
//! (and so the partition) against a naive cell-by-cell model.
//!
//! Test support only (`cfg(any(test, fuzzing))`), like the rest of [`crate::fuzzing`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound;

use kvfeed_span::{EncodedKey, Span, below_end};

/// A partition of a span into contiguous pieces, each with a value.
///
/// Invariants (checked by [`Partition::check_invariants`]): there is a piece starting at the span's
/// start, every piece start lies inside the span, and so the pieces cover the span exactly, with no
/// gap and no overlap.
#[derive(Clone)]
pub struct Partition<V> {
    span: Span,
    /// Piece start -> value; a piece ends where the next one starts, the last at `span.end()`.
    pieces: BTreeMap<EncodedKey, V>,
}

/// One piece of a [`Partition`], borrowed.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece<'a, V> {
    /// The first key of the piece.
    pub start: &'a EncodedKey,
    /// The end of the piece (exclusive); empty for plus infinity.
    pub end: &'a EncodedKey,
    /// The piece's value.
    pub value: &'a V,
}

impl<V> Piece<'_, V> {
    /// The piece's keys as a span.
    pub fn span(&self) -> Span {
        Span::new(self.start.clone(), self.end.clone()).expect("pieces are never empty")
    }
}

/// A range given to a [`Partition`] that is not inside its span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfSpan {
    /// The range asked for.
    pub range: Span,
}

impl fmt::Display for OutOfSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "range {:?} is not inside the partitioned span", self.range)
    }
}

impl core::error::Error for OutOfSpan {}

impl<V> Partition<V> {
    /// One piece covering the whole `span` with `value`.
    pub fn new(span: Span, value: V) -> Self {
        let mut pieces = BTreeMap::new();
        pieces.insert(span.start().clone(), value);
        Self { span, pieces }
    }

    /// The partitioned span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The number of pieces (at least one).
    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// The piece containing the encoded `key`, or `None` if the key is outside the span.
    pub fn piece_at(&self, key: &[u8]) -> Option<Piece<'_, V>> {
        if !self.span.contains_key(key) {
            return None;
        }
        let (start, value) = self.pieces.range::<[u8], _>(up_to(key)).next_back()?;
        Some(Piece { start, end: self.end_of(start), value })
    }

    /// The value of the piece that starts exactly at `start`.
    pub fn get_exact(&self, start: &[u8]) -> Option<&V> {
        self.pieces.get(start)
    }

    /// The value of the piece that starts exactly at `start`, mutably.
    pub fn get_exact_mut(&mut self, start: &[u8]) -> Option<&mut V> {
        self.pieces.get_mut(start)
    }

    /// The end of the piece that starts exactly at `start`.
    pub fn end_of_piece(&self, start: &[u8]) -> Option<&EncodedKey> {
        let (start, _) = self.pieces.get_key_value(start)?;
        Some(self.end_of(start))
    }

    /// The end of the piece starting at `start` (the next start, or the span's end).
    fn end_of(&self, start: &EncodedKey) -> &EncodedKey {
        self.pieces
            .range::<EncodedKey, _>((Bound::Excluded(start), Bound::Unbounded))
            .next()
            .map_or(self.span.end(), |(next, _)| next)
    }

    /// The pieces that overlap `range`, in key order (whole pieces, not clipped to `range`).
    pub fn overlapping<'a>(&'a self, range: &'a Span) -> impl Iterator<Item = Piece<'a, V>> + 'a {
        // The piece containing the range's start (or the first piece when the range starts
        // before the span), then every piece starting below the range's end.
        let first = self
            .pieces
            .range::<[u8], _>(up_to(range.start().as_bytes()))
            .next_back()
            .map_or(self.span.start(), |(k, _)| k);
        let mut iter = self.pieces.range::<EncodedKey, _>(first..).peekable();
        // A range at or past the span's end would otherwise yield the last piece.
        let disjoint = !self.span.overlaps(range);
        core::iter::from_fn(move || {
            if disjoint {
                return None;
            }
            let (start, value) = iter.next()?;
            if !below_end(start.as_bytes(), range.end().as_bytes()) {
                return None;
            }
            let end = iter.peek().map_or(self.span.end(), |(next, _)| next);
            Some(Piece { start, end, value })
        })
    }

    /// The pieces that overlap `range`, in descending key order, and whether the range's end is a
    /// piece boundary (or the span's end). One tree descent: the fast path of a range lock.
    pub fn overlapping_rev<'a>(
        &'a self,
        range: &'a Span,
    ) -> (bool, impl Iterator<Item = (&'a EncodedKey, &'a V)> + 'a) {
        let end = range.end();
        let upper = if range.is_end_unbounded() { Bound::Unbounded } else { Bound::Included(end) };
        let mut iter =
            self.pieces.range::<EncodedKey, _>((Bound::Unbounded, upper)).rev().peekable();
        let mut end_is_boundary = range.is_end_unbounded() || end == self.span.end();
        if !range.is_end_unbounded() && iter.next_if(|(k, _)| *k == end).is_some() {
            end_is_boundary = true;
        }
        let start = range.start();
        // A range that misses the span overlaps no piece.
        let mut done = !range.overlaps(&self.span);
        let pieces = iter.map_while(move |(k, v)| {
            if done {
                return None;
            }
            done = k <= start;
            Some((k, v))
        });
        (end_is_boundary, pieces)
    }

    /// The piece that starts exactly at `start`, with its end. One tree descent.
    pub fn piece_starting_at(&self, start: &[u8]) -> Option<Piece<'_, V>> {
        let mut iter = self.pieces.range::<[u8], _>((Bound::Included(start), Bound::Unbounded));
        let (first, value) = iter.next().filter(|(k, _)| k.as_bytes() == start)?;
        let end = iter.next().map_or(self.span.end(), |(next, _)| next);
        Some(Piece { start: first, end, value })
    }

    /// Makes `key` a piece boundary whose piece (up to the next boundary) holds `value`, without
    /// looking at the piece it cuts: for callers that know it already. Returns the value the
    /// boundary had if `key` was one already (it is replaced).
    pub fn insert_boundary(&mut self, key: &[u8], value: V) -> Result<Option<V>, OutOfSpan> {
        if !self.span.contains_key(key) {
            let range = Span::from_bytes(key, &[]).unwrap_or_else(|_| Span::full());
            return Err(OutOfSpan { range });
        }
        Ok(self.pieces.insert(EncodedKey::from_encoded(key), value))
    }

    /// Removes the pieces that start strictly inside `range` (after its start, before its end),
    /// handing their values to `removed` in key order; the piece at the range's start grows over
    /// them.
    pub fn remove_interior(&mut self, range: &Span, mut removed: impl FnMut(V)) {
        // Never the first piece: the interior starts after the span's start too.
        let start = core::cmp::max(range.start(), self.span.start());
        let interior_end =
            if range.is_end_unbounded() { Bound::Unbounded } else { Bound::Excluded(range.end()) };
        for (_, value) in
            self.pieces.extract_if((Bound::Excluded(start), interior_end), |_, _| true)
        {
            removed(value);
        }
    }

    /// Every piece, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Piece<'_, V>> + '_ {
        self.overlapping(&self.span)
    }

    /// The maximal runs of adjacent pieces whose value satisfies `pred`, clipped to `range`, in key
    /// order: for example the holes of a map whose unset pieces are `None`.
    pub fn runs(&self, range: &Span, mut pred: impl FnMut(&V) -> bool) -> Vec<Span> {
        let mut runs: Vec<Span> = Vec::new();
        let mut open: Option<(EncodedKey, EncodedKey)> = None;
        for piece in self.overlapping(range) {
            if pred(piece.value) {
                match &mut open {
                    Some((_, end)) => *end = piece.end.clone(),
                    None => open = Some((piece.start.clone(), piece.end.clone())),
                }
            } else if let Some((start, end)) = open.take() {
                runs.extend(Span::new(start, end).ok().and_then(|s| s.intersect(range).ok()));
            }
        }
        if let Some((start, end)) = open {
            runs.extend(Span::new(start, end).ok().and_then(|s| s.intersect(range).ok()));
        }
        runs
    }

    /// Makes `key` a piece boundary, giving the new right-hand piece `split(&left_value)`.
    /// Returns whether a new piece was made (false when `key` already starts one).
    pub fn split_at(&mut self, key: &[u8], split: impl FnOnce(&V) -> V) -> Result<bool, OutOfSpan> {
        if !self.span.contains_key(key) {
            let range = Span::from_bytes(key, &[]).unwrap_or_else(|_| Span::full());
            return Err(OutOfSpan { range });
        }
        let (start, value) = self
            .pieces
            .range::<[u8], _>(up_to(key))
            .next_back()
            .expect("the span start is a piece");
        if start.as_bytes() == key {
            return Ok(false);
        }
        let right = split(value);
        self.pieces.insert(EncodedKey::from_encoded(key), right);
        Ok(true)
    }

    /// Makes `range` a single piece holding `value`. Pieces cut by the range's bounds are split
    /// first (the part outside keeps `split(&old)`); every value the range covered is handed to
    /// `removed`, in key order.
    pub fn replace(
        &mut self,
        range: &Span,
        value: V,
        mut split: impl FnMut(&V) -> V,
        mut removed: impl FnMut(V),
    ) -> Result<(), OutOfSpan> {
        if !range.is_sub_span(&self.span) {
            return Err(OutOfSpan { range: range.clone() });
        }
        if !range.is_end_unbounded() && range.end() != self.span.end() {
            self.split_at(range.end().as_bytes(), &mut split)?;
        }
        self.split_at(range.start().as_bytes(), &mut split)?;
        let old = self.pieces.get_mut(range.start().as_bytes()).expect("split made this piece");
        removed(core::mem::replace(old, value));
        self.remove_interior(range, removed);
        Ok(())
    }

    /// Removes the piece starting at `start` by merging it into the piece before it, when
    /// `mergeable(previous, this)` says so. Returns the removed piece's value.
    pub fn merge_into_previous(
        &mut self,
        start: &[u8],
        mergeable: impl FnOnce(&V, &V) -> bool,
    ) -> Option<V> {
        let mut before = self.pieces.range::<[u8], _>(up_to(start)).rev();
        let (this_start, this) = before.next()?;
        let (_, previous) = before.next()?;
        if this_start.as_bytes() != start || !mergeable(previous, this) {
            return None;
        }
        self.pieces.remove(start)
    }

    /// Checks the structural invariants, describing the first one broken.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let Some((first, _)) = self.pieces.first_key_value() else {
            return Err("partition has no piece");
        };
        if first != self.span.start() {
            return Err("first piece does not start at the span start");
        }
        if let Some((last, _)) = self.pieces.last_key_value()
            && !below_end(last.as_bytes(), self.span.end().as_bytes())
        {
            return Err("a piece starts at or after the span end");
        }
        Ok(())
    }
}

/// The keys up to and including `key`, as a range over unsized byte keys.
fn up_to(key: &[u8]) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (Bound::Unbounded, Bound::Included(key))
}

impl<V: fmt::Debug> fmt::Debug for Partition<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|p| (p.span(), p.value))).finish()
    }
}

/// Why a [`RangeTsMap`] operation was refused. The map is unchanged after an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsMapError {
    /// The range is not inside the map's span.
    OutOfSpan(OutOfSpan),
    /// `set` over a range that is already (partly) set.
    DoubleSet(Span),
    /// `unset` over a range that is already (partly) unset.
    DoubleUnset(Span),
    /// `min_in` over a range that is (partly) unset.
    Unset(Span),
}

impl fmt::Display for TsMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfSpan(e) => e.fmt(f),
            Self::DoubleSet(r) => write!(f, "range {r:?} is already set"),
            Self::DoubleUnset(r) => write!(f, "range {r:?} is already unset"),
            Self::Unset(r) => write!(f, "range {r:?} is unset"),
        }
    }
}

impl core::error::Error for TsMapError {}

impl From<OutOfSpan> for TsMapError {
    fn from(e: OutOfSpan) -> Self {
        Self::OutOfSpan(e)
    }
}

/// A span partitioned into pieces that are either set to a timestamp or unset: the original's
/// `rangeTsMap`, which tracks the resolved ts of the parts of a subscription no region holds.
///
/// Adjacent unset pieces are merged; adjacent set pieces are kept apart (they remember the ts of
/// different regions).
#[derive(Clone, Debug)]
pub struct RangeTsMap {
    pieces: Partition<Option<u64>>,
}

impl RangeTsMap {
    /// A map over `span`, all of it set to `ts`.
    pub fn new(span: Span, ts: u64) -> Self {
        Self { pieces: Partition::new(span, Some(ts)) }
    }

    /// The underlying partition (`None` pieces are unset).
    pub fn partition(&self) -> &Partition<Option<u64>> {
        &self.pieces
    }

    /// Sets all of `range`, which must be entirely unset, to `ts`.
    pub fn set(&mut self, range: &Span, ts: u64) -> Result<(), TsMapError> {
        self.check_inside(range)?;
        if self.pieces.overlapping(range).any(|p| p.value.is_some()) {
            return Err(TsMapError::DoubleSet(range.clone()));
        }
        self.pieces.replace(range, Some(ts), |v| *v, drop)?;
        Ok(())
    }

    /// Unsets all of `range`, which must be entirely set.
    pub fn unset(&mut self, range: &Span) -> Result<(), TsMapError> {
        self.check_inside(range)?;
        if self.pieces.overlapping(range).any(|p| p.value.is_none()) {
            return Err(TsMapError::DoubleUnset(range.clone()));
        }
        self.pieces.replace(range, None, |v| *v, drop)?;
        let both_unset = |a: &Option<u64>, b: &Option<u64>| a.is_none() && b.is_none();
        if !range.is_end_unbounded() && range.end() != self.pieces.span().end() {
            self.pieces.merge_into_previous(range.end().as_bytes(), both_unset);
        }
        self.pieces.merge_into_previous(range.start().as_bytes(), both_unset);
        Ok(())
    }

    /// The minimum ts over the pieces overlapping `range`, which must be entirely set.
    pub fn min_in(&self, range: &Span) -> Result<u64, TsMapError> {
        self.check_inside(range)?;
        let mut min = u64::MAX;
        for piece in self.pieces.overlapping(range) {
            min = min.min(piece.value.ok_or_else(|| TsMapError::Unset(range.clone()))?);
        }
        Ok(min)
    }

    /// The minimum ts over the set pieces, `u64::MAX` when none is set.
    pub fn min(&self) -> u64 {
        self.pieces.iter().filter_map(|p| *p.value).min().unwrap_or(u64::MAX)
    }

    /// The unset runs inside `range`.
    pub fn unset_runs(&self, range: &Span) -> Vec<Span> {
        self.pieces.runs(range, Option::is_none)
    }

    fn check_inside(&self, range: &Span) -> Result<(), TsMapError> {
        if range.is_sub_span(self.pieces.span()) {
            Ok(())
        } else {
            Err(TsMapError::OutOfSpan(OutOfSpan { range: range.clone() }))
        }
    }
}
