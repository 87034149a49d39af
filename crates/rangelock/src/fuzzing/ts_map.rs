//! The check of the partition model itself: a sequence of [`RangeTsMap`] operations applied both
//! to the map and to [`TsMapModel`], a naive cell-by-cell model over the key alphabet [`KEYS`].
//!
//! [`Partition`](super::partition::Partition) is the model the piece index is checked against
//! ([`super::pieces`]); this module checks that model in turn, through the set/unset/min-ts map
//! built on it (the original's `rangeTsMap`). The cargo-fuzz target `rangelock_partition` and a
//! proptest in the crate's tests drive [`check_ts_map`].

use alloc::vec::Vec;

use kvfeed_span::{Span, SpanError};

use super::partition::{OutOfSpan, Piece, RangeTsMap, TsMapError};

/// The sorted key alphabet that [`TsMapOp`] bounds are drawn from. Near neighbours (`a`, `a\0`,
/// `a\xff`) and extremes (`\0`, `\xff\xff`) make ranges touch and collide; the empty key is not
/// in it, as it stands for the unbounded ends.
pub const KEYS: [&[u8]; 8] =
    [b"\x00", b"a", b"a\x00", b"a\xff", b"b", b"c\x00", b"\xff", b"\xff\xff"];

/// The number of bounds: minus infinity, the keys, plus infinity.
const BOUNDS: usize = KEYS.len() + 2;

/// One operation on a [`RangeTsMap`] (or its partition).
///
/// A `start` is taken modulo `KEYS.len() + 1`: 0 is minus infinity (an empty start), `i` is
/// `KEYS[i - 1]`. An `end` is `1 + end % (KEYS.len() + 1)`: `i <= KEYS.len()` is `KEYS[i - 1]` and
/// `KEYS.len() + 1` is plus infinity (an empty end). A range whose start is not below its end is
/// checked to be refused by [`Span::new`] and the operation is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum TsMapOp {
    /// [`RangeTsMap::set`].
    Set {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
        /// The ts to set.
        ts: u64,
    },
    /// [`RangeTsMap::unset`].
    Unset {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
    },
    /// [`RangeTsMap::min_in`].
    MinIn {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
    },
    /// [`RangeTsMap::min`].
    Min,
    /// [`RangeTsMap::unset_runs`] (the range may stick out of the map's span).
    UnsetRuns {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
    },
    /// [`Partition::overlapping`](super::partition::Partition::overlapping) on the map's partition (the range
    /// may stick out of the span).
    Overlapping {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
    },
    /// [`Partition::overlapping_rev`](super::partition::Partition::overlapping_rev) on the map's partition;
    /// skipped for ranges not inside the span (the fast path of a range lock never asks those).
    OverlappingRev {
        /// Start bound index.
        start: u8,
        /// End bound index.
        end: u8,
    },
    /// [`Partition::piece_at`](super::partition::Partition::piece_at) on the map's partition, and the
    /// lookups by exact piece start: [`Partition::piece_starting_at`](super::partition::Partition::piece_starting_at),
    /// [`Partition::end_of_piece`](super::partition::Partition::end_of_piece) and
    /// [`Partition::get_exact`](super::partition::Partition::get_exact).
    PieceAt {
        /// Index of the key: 0 is the empty key, `i` is `KEYS[i - 1]` (modulo `KEYS.len() + 1`).
        key: u8,
        /// A byte appended to the key, to look up keys between the alphabet's.
        suffix: Option<u8>,
    },
}

/// A whole partition fuzz case: the map's span and initial ts, then the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct TsMapCase {
    /// Start bound index of the map's span (as in [`TsMapOp`]).
    pub start: u8,
    /// End bound index of the map's span (as in [`TsMapOp`]); an empty span becomes the full one.
    pub end: u8,
    /// The ts the whole span starts with.
    pub initial_ts: u64,
    /// The operations, applied in order.
    pub ops: Vec<TsMapOp>,
}

/// Runs [`check_ts_map`] on a fuzz case.
pub fn check_case(case: &TsMapCase) {
    check_ts_map(case.start, case.end, case.initial_ts, &case.ops);
}

/// The key bytes of bound index `i` (empty for either infinity).
fn bound_key(i: usize) -> &'static [u8] {
    if i == 0 || i == BOUNDS - 1 { &[] } else { KEYS[i - 1] }
}

/// The bound indices an op's raw `start` and `end` stand for.
fn bounds(start: u8, end: u8) -> (usize, usize) {
    (usize::from(start) % (BOUNDS - 1), 1 + usize::from(end) % (BOUNDS - 1))
}

/// The span between two bound indices, checking that [`Span::new`] refuses empty ones.
fn span_between(start: usize, end: usize) -> Option<Span> {
    let built = Span::from_bytes(bound_key(start), bound_key(end));
    if start < end {
        Some(
            built.unwrap_or_else(|e| panic!("Span::from_bytes refused bounds {start}..{end}: {e}")),
        )
    } else {
        match built {
            Err(SpanError::Empty { .. }) => None,
            other => panic!("Span::from_bytes of bounds {start}..{end} gave {other:?}, not Empty"),
        }
    }
}

/// A piece as plain data: start, end (empty for plus infinity) and value.
type PlainPiece = (Vec<u8>, Vec<u8>, Option<u64>);

/// The naive model of a [`RangeTsMap`]: the key space is cut into cells at the [`KEYS`] (cell `j`
/// runs from bound `j` to bound `j + 1`), and each cell of the span records whether it is set,
/// with which ts, and by which `set` (its origin; the initial value is origin 0).
///
/// Pieces are derived, not stored: two adjacent cells are in the same piece when both are unset
/// (unset pieces are merged) or both were set by the same `set` (set pieces are never merged).
#[derive(Clone, Debug)]
pub struct TsMapModel {
    /// The span's bound indices: the cells are `lo..hi`.
    lo: usize,
    hi: usize,
    /// `(origin, ts)` of each cell of the span, `None` when unset.
    cells: Vec<Option<(u32, u64)>>,
    next_origin: u32,
}

impl TsMapModel {
    /// A model of `RangeTsMap::new(span, ts)` for the span between bound indices `lo < hi`.
    pub fn new(lo: usize, hi: usize, ts: u64) -> Self {
        assert!(lo < hi && hi < BOUNDS, "bad model span {lo}..{hi}");
        Self { lo, hi, cells: alloc::vec![Some((0, ts)); hi - lo], next_origin: 1 }
    }

    fn cells_mut(&mut self, start: usize, end: usize) -> &mut [Option<(u32, u64)>] {
        &mut self.cells[start - self.lo..end - self.lo]
    }

    fn cells(&self, start: usize, end: usize) -> &[Option<(u32, u64)>] {
        &self.cells[start - self.lo..end - self.lo]
    }

    fn check_inside(&self, start: usize, end: usize, range: &Span) -> Result<(), TsMapError> {
        if self.lo <= start && end <= self.hi {
            Ok(())
        } else {
            Err(TsMapError::OutOfSpan(OutOfSpan { range: range.clone() }))
        }
    }

    /// The model of [`RangeTsMap::set`].
    pub fn set(
        &mut self,
        start: usize,
        end: usize,
        range: &Span,
        ts: u64,
    ) -> Result<(), TsMapError> {
        self.check_inside(start, end, range)?;
        if self.cells(start, end).iter().any(Option::is_some) {
            return Err(TsMapError::DoubleSet(range.clone()));
        }
        let origin = self.next_origin;
        self.next_origin += 1;
        self.cells_mut(start, end).fill(Some((origin, ts)));
        Ok(())
    }

    /// The model of [`RangeTsMap::unset`].
    pub fn unset(&mut self, start: usize, end: usize, range: &Span) -> Result<(), TsMapError> {
        self.check_inside(start, end, range)?;
        if self.cells(start, end).iter().any(Option::is_none) {
            return Err(TsMapError::DoubleUnset(range.clone()));
        }
        self.cells_mut(start, end).fill(None);
        Ok(())
    }

    /// The model of [`RangeTsMap::min_in`].
    pub fn min_in(&self, start: usize, end: usize, range: &Span) -> Result<u64, TsMapError> {
        self.check_inside(start, end, range)?;
        let mut min = u64::MAX;
        for cell in self.cells(start, end) {
            let (_, ts) = cell.ok_or_else(|| TsMapError::Unset(range.clone()))?;
            min = min.min(ts);
        }
        Ok(min)
    }

    /// The model of [`RangeTsMap::min`].
    pub fn min(&self) -> u64 {
        self.cells.iter().flatten().map(|&(_, ts)| ts).min().unwrap_or(u64::MAX)
    }

    /// The model of [`RangeTsMap::unset_runs`]: maximal runs of unset cells, clipped to the range.
    pub fn unset_runs(&self, start: usize, end: usize) -> Vec<Span> {
        let mut runs = Vec::new();
        let mut open = None;
        for cell in start.max(self.lo)..end.min(self.hi) {
            match (self.cells[cell - self.lo], open) {
                (None, None) => open = Some(cell),
                (Some(_), Some(first)) => {
                    runs.push(span_between(first, cell).expect("runs are not empty"));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(first) = open {
            runs.push(span_between(first, end.min(self.hi)).expect("runs are not empty"));
        }
        runs
    }

    /// The pieces as `(first cell, end bound, value)`.
    fn piece_cells(&self) -> Vec<(usize, usize, Option<u64>)> {
        let same_piece = |a: Option<(u32, u64)>, b: Option<(u32, u64)>| match (a, b) {
            (None, None) => true,
            (Some((a, _)), Some((b, _))) => a == b,
            _ => false,
        };
        let mut pieces: Vec<(usize, usize, Option<u64>)> = Vec::new();
        for cell in self.lo..self.hi {
            let value = self.cells[cell - self.lo];
            match pieces.last_mut() {
                Some(last) if same_piece(self.cells[last.0 - self.lo], value) => last.1 = cell + 1,
                _ => pieces.push((cell, cell + 1, value.map(|(_, ts)| ts))),
            }
        }
        pieces
    }

    /// Every piece, in key order.
    pub fn pieces(&self) -> Vec<PlainPiece> {
        self.piece_cells().into_iter().map(|(s, e, v)| plain(s, e, v)).collect()
    }

    /// The pieces overlapping the range between bound indices `start < end`.
    pub fn overlapping(&self, start: usize, end: usize) -> Vec<PlainPiece> {
        self.piece_cells()
            .into_iter()
            .filter(|&(s, e, _)| s < end && start < e)
            .map(|(s, e, v)| plain(s, e, v))
            .collect()
    }

    /// The piece starting exactly at `key`.
    pub fn piece_starting_at(&self, key: &[u8]) -> Option<PlainPiece> {
        self.pieces().into_iter().find(|p| p.0 == key)
    }

    /// The piece holding `key`, if the key is in the span.
    pub fn piece_at(&self, key: &[u8]) -> Option<PlainPiece> {
        // Cell `j` holds the keys from `KEYS[j - 1]` (or minus infinity) up to `KEYS[j]`.
        let cell = KEYS.iter().filter(|k| **k <= key).count();
        self.piece_cells()
            .into_iter()
            .find(|&(s, e, _)| s <= cell && cell < e)
            .map(|(s, e, v)| plain(s, e, v))
    }
}

fn plain(start: usize, end: usize, value: Option<u64>) -> PlainPiece {
    (bound_key(start).to_vec(), bound_key(end).to_vec(), value)
}

fn plain_pieces<'a>(pieces: impl Iterator<Item = Piece<'a, Option<u64>>>) -> Vec<PlainPiece> {
    pieces.map(|p| (p.start.as_bytes().to_vec(), p.end.as_bytes().to_vec(), *p.value)).collect()
}

/// Applies `ops` to a [`RangeTsMap`] over the span between bound indices `start` and `end` (as in
/// [`TsMapOp`]; an empty span becomes the full one) holding `initial_ts`, and to a
/// [`TsMapModel`]. After every step the two must agree on the outcome (`Ok` or which error, with
/// its payload) and result, on the whole list of pieces, and the partition's invariants must
/// hold. Panics with the step, the op and both states on the first divergence.
pub fn check_ts_map(start: u8, end: u8, initial_ts: u64, ops: &[TsMapOp]) {
    let (mut lo, mut hi) = bounds(start, end);
    if lo >= hi {
        (lo, hi) = (0, BOUNDS - 1);
    }
    let span = span_between(lo, hi).expect("the map span is not empty");
    let mut map = RangeTsMap::new(span, initial_ts);
    let mut model = TsMapModel::new(lo, hi, initial_ts);
    for (step, op) in ops.iter().enumerate() {
        let before = (map.clone(), model.clone());
        let diverged = |what: &str,
                        real: &dyn core::fmt::Debug,
                        expected: &dyn core::fmt::Debug| {
            panic!(
                "step {step}, {op:?}: {what} diverged\n  RangeTsMap gave: {real:?}\n  the model gave: {expected:?}\n  map before: {:?}\n  model before: {:?}",
                before.0, before.1
            )
        };
        match *op {
            TsMapOp::Set { start, end, ts } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                let (real, expected) = (map.set(&range, ts), model.set(s, e, &range, ts));
                if real != expected {
                    diverged("set", &real, &expected);
                }
            }
            TsMapOp::Unset { start, end } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                let (real, expected) = (map.unset(&range), model.unset(s, e, &range));
                if real != expected {
                    diverged("unset", &real, &expected);
                }
            }
            TsMapOp::MinIn { start, end } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                let (real, expected) = (map.min_in(&range), model.min_in(s, e, &range));
                if real != expected {
                    diverged("min_in", &real, &expected);
                }
            }
            TsMapOp::Min => {
                let (real, expected) = (map.min(), model.min());
                if real != expected {
                    diverged("min", &real, &expected);
                }
            }
            TsMapOp::UnsetRuns { start, end } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                let (real, expected) = (map.unset_runs(&range), model.unset_runs(s, e));
                if real != expected {
                    diverged("unset_runs", &real, &expected);
                }
            }
            TsMapOp::Overlapping { start, end } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                let real = plain_pieces(map.partition().overlapping(&range));
                let expected = model.overlapping(s, e);
                if real != expected {
                    diverged("overlapping", &real, &expected);
                }
            }
            TsMapOp::PieceAt { key, suffix } => {
                let index = usize::from(key) % (KEYS.len() + 1);
                let mut key = if index == 0 { Vec::new() } else { KEYS[index - 1].to_vec() };
                key.extend(suffix);
                let real =
                    map.partition().piece_at(&key).map(|p| plain_pieces(core::iter::once(p)));
                let expected = model.piece_at(&key).map(|p| alloc::vec![p]);
                if real != expected {
                    diverged("piece_at", &real, &expected);
                }
                let partition = map.partition();
                let real =
                    partition.piece_starting_at(&key).map(|p| plain_pieces(core::iter::once(p)));
                let expected = model.piece_starting_at(&key).map(|p| alloc::vec![p]);
                if real != expected {
                    diverged("piece_starting_at", &real, &expected);
                }
                let real =
                    (partition.end_of_piece(&key).map(|e| e.to_vec()), partition.get_exact(&key));
                let expected = model.piece_starting_at(&key).map(|(_, end, value)| (end, value));
                let expected =
                    (expected.as_ref().map(|p| p.0.clone()), expected.as_ref().map(|p| &p.1));
                if real != expected {
                    diverged("end_of_piece and get_exact", &real, &expected);
                }
            }
            TsMapOp::OverlappingRev { start, end } => {
                let (s, e) = bounds(start, end);
                let Some(range) = span_between(s, e) else { continue };
                if s < model.lo || e > model.hi {
                    continue;
                }
                let (end_is_boundary, pieces) = map.partition().overlapping_rev(&range);
                let real =
                    (end_is_boundary, pieces.map(|(k, v)| (k.to_vec(), *v)).collect::<Vec<_>>());
                let overlapping = model.overlapping(s, e);
                let expected = (
                    e == model.hi || model.pieces().iter().any(|p| p.0 == bound_key(e)),
                    overlapping.into_iter().rev().map(|(k, _, v)| (k, v)).collect::<Vec<_>>(),
                );
                if real != expected {
                    diverged("overlapping_rev", &real, &expected);
                }
            }
        }
        if let Err(broken) = map.partition().check_invariants() {
            panic!("step {step}, {op:?}: invariant broken: {broken}\n  map: {map:?}");
        }
        let (real, expected) = (plain_pieces(map.partition().iter()), model.pieces());
        if real != expected {
            panic!(
                "step {step}, {op:?}: the pieces diverged\n  RangeTsMap: {real:?}\n  the model: {expected:?}"
            );
        }
        assert_eq!(
            map.partition().piece_count(),
            expected.len(),
            "step {step}, {op:?}: piece_count"
        );
    }
}
