//! The partition model of [`crate::fuzzing::partition`]: `Partition` and `RangeTsMap` (§3.2,
//! §10 B items 8-9, §10 H item 29's `FindHoles`), scenario by scenario and as a property test
//! against the naive model of [`crate::fuzzing::ts_map`].

use alloc::format;
use alloc::vec::Vec;
use core::cell::Cell;

use kvfeed_span::{EncodedKey, Span, table};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::fuzzing::partition::{OutOfSpan, Partition, RangeTsMap, TsMapError};
use crate::fuzzing::ts_map::{self, KEYS, TsMapOp};

/// The span `[start, end)` over encoded bytes (empty for an unbounded end); panics if empty.
fn sp(start: &[u8], end: &[u8]) -> Span {
    Span::from_bytes(start, end).unwrap_or_else(|e| panic!("bad test span: {e}"))
}

const MAX: u64 = u64::MAX;

/// The pieces of a partition as `(start, end, value)` byte strings.
fn pieces<V: Clone>(p: &Partition<V>) -> Vec<(Vec<u8>, Vec<u8>, V)> {
    p.iter()
        .map(|p| (p.start.as_bytes().to_vec(), p.end.as_bytes().to_vec(), p.value.clone()))
        .collect()
}

/// Expected pieces, written as `(start, end, value)` with string keys.
fn expect<V: Clone>(list: &[(&str, &str, V)]) -> Vec<(Vec<u8>, Vec<u8>, V)> {
    list.iter().map(|(s, e, v)| (s.as_bytes().to_vec(), e.as_bytes().to_vec(), v.clone())).collect()
}

/// A step of a `RangeTsMap` scenario; keys are byte strings (the map does not care whether they
/// are encoded).
enum Step {
    Set(&'static [u8], &'static [u8], u64),
    Unset(&'static [u8], &'static [u8]),
    /// `min_in` over the range gives this ts.
    Min(&'static [u8], &'static [u8], u64),
    /// `min_in` over the range is refused because part of it is unset.
    MinUnset(&'static [u8], &'static [u8]),
    /// `set` over the range is refused (double set).
    DoubleSet(&'static [u8], &'static [u8], u64),
    /// `unset` over the range is refused (double unset).
    DoubleUnset(&'static [u8], &'static [u8]),
    /// `min()` over the whole map.
    MinAll(u64),
    /// The number of pieces.
    Pieces(usize),
}

/// Runs a scenario; every refused operation must leave the map unchanged.
#[track_caller]
fn run(map: &mut RangeTsMap, steps: &[Step]) {
    for (i, step) in steps.iter().enumerate() {
        let before = format!("{map:?}");
        let unchanged =
            |map: &RangeTsMap| assert_eq!(format!("{map:?}"), before, "step {i}: map changed");
        match *step {
            Step::Set(s, e, ts) => assert_eq!(map.set(&sp(s, e), ts), Ok(()), "step {i}"),
            Step::Unset(s, e) => assert_eq!(map.unset(&sp(s, e)), Ok(()), "step {i}"),
            Step::Min(s, e, ts) => {
                assert_eq!(map.min_in(&sp(s, e)), Ok(ts), "step {i}: min {s:?}..{e:?}")
            }
            Step::MinUnset(s, e) => {
                assert_eq!(map.min_in(&sp(s, e)), Err(TsMapError::Unset(sp(s, e))), "step {i}");
            }
            Step::DoubleSet(s, e, ts) => {
                assert_eq!(
                    map.set(&sp(s, e), ts),
                    Err(TsMapError::DoubleSet(sp(s, e))),
                    "step {i}"
                );
                unchanged(map);
            }
            Step::DoubleUnset(s, e) => {
                assert_eq!(
                    map.unset(&sp(s, e)),
                    Err(TsMapError::DoubleUnset(sp(s, e))),
                    "step {i}"
                );
                unchanged(map);
            }
            Step::MinAll(ts) => assert_eq!(map.min(), ts, "step {i}: min()"),
            Step::Pieces(n) => assert_eq!(map.partition().piece_count(), n, "step {i}: {map:?}"),
        }
        assert_eq!(map.partition().check_invariants(), Ok(()), "step {i}");
    }
}

#[test]
fn set_unset_min_sequence() {
    // §10 B item 8: the original's sequence on [a, z) starting at MAX, where every "set" of a
    // range is preceded by its "unset" (a region locking it, then unlocking at a resolved ts).
    use Step::*;
    let mut map = RangeTsMap::new(sp(b"a", b"z"), MAX);
    #[rustfmt::skip]
    run(&mut map, &[
        Min(b"a", b"z", MAX),
        Unset(b"b", b"e"), Pieces(3), Set(b"b", b"e", 100), Pieces(3),
        Min(b"a", b"z", 100), Min(b"b", b"e", 100), Min(b"a", b"c", 100), Min(b"d", b"f", 100),
        Min(b"a", b"b", MAX), Min(b"e", b"f", MAX),
        // [a, b\0) reaches one key into [b, e).
        Min(b"a", b"b\x00", 100),
        Unset(b"d", b"g"), Set(b"d", b"g", 80), Pieces(4),
        Min(b"d", b"g", 80), Min(b"a", b"z", 80), Min(b"d", b"e", 80), Min(b"a", b"d", 100),
        Unset(b"c", b"f"), Set(b"c", b"f", 120), Pieces(5),
        Min(b"c", b"f", 120), Min(b"c", b"d", 120), Min(b"d", b"e", 120), Min(b"e", b"f", 120),
        Min(b"b", b"e", 100), Min(b"a", b"z", 80),
        Unset(b"c", b"f"), Set(b"c", b"f", 130), Pieces(5),
        Min(b"c", b"f", 130), Min(b"c", b"d", 130), Min(b"d", b"e", 130), Min(b"e", b"f", 130),
        Min(b"b", b"e", 100), Min(b"a", b"z", 80), MinAll(80),
    ]);
    // Adjacent set pieces are kept apart (they hold the ts of different regions).
    assert_eq!(
        pieces(map.partition()),
        expect(&[
            ("a", "b", Some(MAX)),
            ("b", "c", Some(100)),
            ("c", "f", Some(130)),
            ("f", "g", Some(80)),
            ("g", "z", Some(MAX)),
        ])
    );
}

#[test]
fn double_set_double_unset_and_unset_min_are_errors() {
    // §10 B item 9: where the original panicked, the map refuses with a typed error and stays
    // as it was; the piece count goes 1 -> 3 -> 1 as the middle and then the rest are unset.
    use Step::*;
    let mut map = RangeTsMap::new(sp(b"a", b"z"), 100);
    #[rustfmt::skip]
    run(&mut map, &[
        Pieces(1), Min(b"a", b"z", 100), MinAll(100),
        DoubleSet(b"a", b"m", 101),
        Unset(b"m", b"x"), Pieces(3),
        Min(b"a", b"m", 100), Min(b"x", b"z", 100), MinAll(100),
        MinUnset(b"m", b"x"), MinUnset(b"n", b"w"), MinUnset(b"a", b"z"), MinUnset(b"l", b"n"),
        DoubleUnset(b"m", b"x"), DoubleUnset(b"n", b"o"), DoubleUnset(b"a", b"n"),
        DoubleSet(b"a", b"n", 7), DoubleSet(b"w", b"y", 7),
        Unset(b"a", b"m"), Pieces(2),
        Unset(b"x", b"z"), Pieces(1),
        MinUnset(b"a", b"z"), MinAll(MAX), DoubleUnset(b"a", b"b"),
        // Setting it all again makes one piece.
        Set(b"a", b"z", 5), Pieces(1), Min(b"a", b"z", 5),
    ]);
    assert_eq!(map.unset_runs(&sp(b"a", b"z")), []);
}

#[test]
fn out_of_span_ranges_are_refused() {
    let mut map = RangeTsMap::new(sp(b"b", b"y"), 10);
    for range in [
        sp(b"a", b"c"),
        sp(b"x", b"z"),
        sp(b"a", b"z"),
        sp(b"", b"c"),
        sp(b"c", b""),
        sp(b"y", b"z"),
    ] {
        let error = TsMapError::OutOfSpan(OutOfSpan { range: range.clone() });
        assert_eq!(map.min_in(&range), Err(error.clone()), "{range:?}");
        assert_eq!(map.unset(&range), Err(error.clone()), "{range:?}");
        assert_eq!(map.set(&range, 1), Err(error), "{range:?}");
    }
    assert_eq!(pieces(map.partition()), expect(&[("b", "y", Some(10))]));
    assert_eq!(
        format!("{}", map.set(&sp(b"a", b"c"), 1).unwrap_err()),
        "range [61, 63) is not inside the partitioned span"
    );
    map.unset(&sp(b"c", b"d")).unwrap();
    assert_eq!(
        format!("{}", map.unset(&sp(b"c", b"d")).unwrap_err()),
        "range [63, 64) is already unset"
    );
    assert_eq!(
        format!("{}", map.set(&sp(b"b", b"d"), 1).unwrap_err()),
        "range [62, 64) is already set"
    );
    assert_eq!(format!("{}", map.min_in(&sp(b"b", b"d")).unwrap_err()), "range [62, 64) is unset");
}

#[test]
fn unbounded_span() {
    use Step::*;
    let mut map = RangeTsMap::new(Span::full(), 1);
    #[rustfmt::skip]
    run(&mut map, &[
        Unset(b"", b"m"), Unset(b"m", b""), Pieces(1), MinUnset(b"", b""),
        Set(b"k", b"", 2), Set(b"", b"c", 3), Pieces(3),
        Min(b"", b"b", 3), Min(b"k", b"", 2), MinUnset(b"", b""), MinAll(2),
        Set(b"c", b"k", 9), Pieces(3), Min(b"", b"", 2),
    ]);
    assert_eq!(
        pieces(map.partition()),
        expect(&[("", "c", Some(3)), ("c", "k", Some(9)), ("k", "", Some(2))])
    );
    assert_eq!(
        format!("{:?}", map.partition()),
        "[([-inf, 63), Some(3)), ([63, 6B), Some(9)), ([6B, +inf), Some(2))]"
    );
}

#[test]
fn unset_runs_find_holes() {
    // §10 H item 29: the six `FindHoles` cases of the original's `BtreeMap`, as the unset runs of
    // a map over [a, f) where only the listed ranges are set.
    #[track_caller]
    fn check(set: &[(&[u8], &[u8])], holes: &[(&[u8], &[u8])]) {
        let span = sp(b"a", b"f");
        let mut map = RangeTsMap::new(span.clone(), 0);
        map.unset(&span).unwrap();
        for (i, &(s, e)) in set.iter().enumerate() {
            map.set(&sp(s, e), i as u64).unwrap();
        }
        let holes: Vec<Span> = holes.iter().map(|&(s, e)| sp(s, e)).collect();
        assert_eq!(map.unset_runs(&span), holes, "set: {set:?}");
        assert_eq!(map.unset_runs(&Span::full()), holes, "a range sticking out of the span");
        assert_eq!(map.partition().runs(&span, Option::is_none), holes);
        // The runs of set pieces and the holes alternate and tile the span.
        let mut tiles = map.partition().runs(&span, Option::is_some);
        tiles.extend(holes);
        tiles.sort();
        assert_eq!(tiles.first().map(Span::start), Some(span.start()));
        assert_eq!(tiles.last().map(Span::end), Some(span.end()));
        for pair in tiles.windows(2) {
            assert_eq!(pair[0].end(), pair[1].start(), "{tiles:?}");
        }
    }
    check(&[(b"a", b"b"), (b"b", b"c"), (b"c", b"d"), (b"d", b"f")], &[]); // all covered
    check(&[(b"a", b"b"), (b"c", b"f")], &[(b"b", b"c")]); // one middle hole
    check(&[(b"a", b"b"), (b"c", b"d"), (b"e", b"f")], &[(b"b", b"c"), (b"d", b"e")]); // two
    check(&[], &[(b"a", b"f")]); // all missing
    check(&[(b"b", b"f")], &[(b"a", b"b")]); // missing head
    check(&[(b"a", b"c"), (b"c", b"e")], &[(b"e", b"f")]); // missing tail
}

#[test]
fn unset_runs_are_clipped_to_the_range() {
    #[track_caller]
    fn check(range: Span, holes: &[Span]) {
        let mut map = RangeTsMap::new(sp(b"a", b"f"), 0);
        map.unset(&sp(b"a", b"b")).unwrap();
        map.unset(&sp(b"c", b"e")).unwrap();
        assert_eq!(map.unset_runs(&range), holes, "{range:?}");
    }
    check(sp(b"a", b"f"), &[sp(b"a", b"b"), sp(b"c", b"e")]);
    check(sp(b"a\x00", b"d"), &[sp(b"a\x00", b"b"), sp(b"c", b"d")]);
    check(sp(b"b", b"c"), &[]);
    check(sp(b"d", b""), &[sp(b"d", b"e")]);
    check(sp(b"", b"a"), &[]);
    check(sp(b"f", b""), &[]);
    check(sp(b"z", b""), &[]);
}

/// A partition of [a, z) into [a, c) 0, [c, f) 1, [f, m) 2, [m, z) 3.
fn four_pieces() -> Partition<u32> {
    let mut p = Partition::new(sp(b"a", b"z"), 0);
    for (key, value) in [(b"c", 1), (b"f", 2), (b"m", 3)] {
        assert_eq!(p.split_at(key, |_| value), Ok(true));
    }
    p
}

#[test]
fn partition_lookups() {
    let p = four_pieces();
    assert_eq!(p.span(), &sp(b"a", b"z"));
    assert_eq!(p.piece_count(), 4);
    assert_eq!(p.check_invariants(), Ok(()));
    #[track_caller]
    fn check(p: &Partition<u32>, key: &[u8], piece: Option<(&str, &str, u32)>) {
        let got = p.piece_at(key).map(|p| (p.start.as_bytes(), p.end.as_bytes(), *p.value));
        let want = piece.map(|(s, e, v)| (s.as_bytes(), e.as_bytes(), v));
        assert_eq!(got, want, "piece_at({key:?})");
    }
    check(&p, b"", None);
    check(&p, b"\x00", None);
    check(&p, b"a", Some(("a", "c", 0)));
    check(&p, b"b\xFF", Some(("a", "c", 0)));
    check(&p, b"c", Some(("c", "f", 1)));
    check(&p, b"l\xFF", Some(("f", "m", 2)));
    check(&p, b"y\xFF\xFF", Some(("m", "z", 3)));
    check(&p, b"z", None);
    assert_eq!(p.piece_at(b"d").unwrap().span(), sp(b"c", b"f"));
    assert_eq!(
        (p.get_exact(b"f"), p.get_exact(b"g"), p.get_exact(b"a")),
        (Some(&2), None, Some(&0))
    );
    assert_eq!(format!("{p:?}"), "[([61, 63), 0), ([63, 66), 1), ([66, 6D), 2), ([6D, 7A), 3)]");
}

#[test]
fn partition_overlapping() {
    #[track_caller]
    fn check(p: &Partition<u32>, range: Span, expected: &[(&str, &str, u32)]) {
        assert_eq!(
            p.overlapping(&range)
                .map(|p| (p.start.as_bytes().to_vec(), p.end.as_bytes().to_vec(), *p.value))
                .collect::<Vec<_>>(),
            expect(expected),
            "{range:?}"
        );
    }
    let p = four_pieces();
    // Whole pieces, not clipped to the range.
    check(&p, sp(b"d", b"g"), &[("c", "f", 1), ("f", "m", 2)]);
    check(&p, sp(b"c", b"f"), &[("c", "f", 1)]);
    check(&p, sp(b"b", b"c\x00"), &[("a", "c", 0), ("c", "f", 1)]);
    check(&p, sp(b"", b""), &[("a", "c", 0), ("c", "f", 1), ("f", "m", 2), ("m", "z", 3)]);
    check(&p, sp(b"", b"a\x00"), &[("a", "c", 0)]);
    check(&p, sp(b"y", b""), &[("m", "z", 3)]);
    // Ranges outside the span overlap no piece (the last piece was once yielded for ranges at or
    // past the span's end).
    check(&p, sp(b"", b"a"), &[]);
    check(&p, sp(b"z", b""), &[]);
    check(&p, sp(b"z\x00", b"zz"), &[]);
}

#[test]
fn partition_split_at() {
    let mut p = four_pieces();
    let calls = Cell::new(0);
    let split = |v: &u32| {
        calls.set(calls.get() + 1);
        v + 10
    };
    assert_eq!(p.split_at(b"d", split), Ok(true));
    assert_eq!(p.split_at(b"d", split), Ok(false), "already a boundary");
    assert_eq!(p.split_at(b"a", split), Ok(false), "the span start is a boundary");
    assert_eq!(calls.get(), 1, "split is called only when a piece is made");
    let out = |key: &[u8], range: Span| {
        let mut q = four_pieces();
        assert_eq!(q.split_at(key, |_| 0), Err(OutOfSpan { range }), "{key:?}");
        assert_eq!(pieces(&q), pieces(&four_pieces()));
    };
    out(b"z", sp(b"z", b""));
    out(b"\x00", sp(b"\x00", b""));
    out(b"", Span::full());
    assert_eq!(
        pieces(&p),
        expect(&[("a", "c", 0), ("c", "d", 1), ("d", "f", 11), ("f", "m", 2), ("m", "z", 3)])
    );
    *p.get_exact_mut(b"d").unwrap() = 7;
    assert_eq!(p.get_exact(b"d"), Some(&7));
    assert!(p.get_exact_mut(b"e").is_none());
}

#[test]
fn partition_replace() {
    #[track_caller]
    fn check(range: Span, removed: &[u32], split_calls: u32, after: &[(&str, &str, u32)]) {
        let mut p = four_pieces();
        let mut got = Vec::new();
        let mut calls = 0;
        let split = |v: &u32| {
            calls += 1;
            v + 100
        };
        p.replace(&range, 9, split, |v| got.push(v)).unwrap();
        assert_eq!((got.as_slice(), calls), (removed, split_calls), "{range:?}");
        assert_eq!(pieces(&p), expect(after), "{range:?}");
        assert_eq!(p.check_invariants(), Ok(()));
    }
    // Cut on both sides: the parts outside keep `split(old)`, the range's old values go to
    // `removed` in key order (the first being the split copy of the piece cut at the start).
    check(
        sp(b"d", b"n"),
        &[101, 2, 3],
        2,
        &[("a", "c", 0), ("c", "d", 1), ("d", "n", 9), ("n", "z", 103)],
    );
    // Inside one piece.
    check(
        sp(b"g", b"h"),
        &[102],
        2,
        &[
            ("a", "c", 0),
            ("c", "f", 1),
            ("f", "g", 2),
            ("g", "h", 9),
            ("h", "m", 102),
            ("m", "z", 3),
        ],
    );
    // On existing boundaries: no split.
    check(sp(b"c", b"f"), &[1], 0, &[("a", "c", 0), ("c", "f", 9), ("f", "m", 2), ("m", "z", 3)]);
    check(sp(b"c", b"m"), &[1, 2], 0, &[("a", "c", 0), ("c", "m", 9), ("m", "z", 3)]);
    // Up to the span's end and over everything.
    check(
        sp(b"g", b"z"),
        &[102, 3],
        1,
        &[("a", "c", 0), ("c", "f", 1), ("f", "g", 2), ("g", "z", 9)],
    );
    check(sp(b"a", b"z"), &[0, 1, 2, 3], 0, &[("a", "z", 9)]);
    // Outside the span: refused, nothing changed, nothing called.
    let mut p = four_pieces();
    let range = sp(b"x", b"");
    let result = p.replace(&range, 9, |_| panic!("split called"), |_| panic!("removed called"));
    assert_eq!(result, Err(OutOfSpan { range }));
    assert_eq!(pieces(&p), pieces(&four_pieces()));
}

#[test]
fn partition_replace_unbounded() {
    let mut p = Partition::new(Span::full(), 'a');
    p.split_at(b"m", |_| 'b').unwrap();
    let mut removed = Vec::new();
    p.replace(&sp(b"k", b""), 'c', |v| *v, |v| removed.push(v)).unwrap();
    assert_eq!(removed, ['a', 'b']);
    assert_eq!(pieces(&p), expect(&[("", "k", 'a'), ("k", "", 'c')]));
    p.replace(&Span::full(), 'd', |v| *v, |v| removed.push(v)).unwrap();
    assert_eq!(pieces(&p), expect(&[("", "", 'd')]));
    assert_eq!(removed, ['a', 'b', 'a', 'c']);
    assert_eq!(p.piece_at(b"").map(|p| *p.value), Some('d'));
}

#[test]
fn partition_merge_into_previous() {
    let mut p = four_pieces();
    assert_eq!(p.merge_into_previous(b"a", |_, _| true), None, "the first piece has no previous");
    assert_eq!(p.merge_into_previous(b"d", |_, _| true), None, "not a piece start");
    assert_eq!(p.merge_into_previous(b"f", |prev, this| prev == this), None, "not mergeable");
    assert_eq!(p.merge_into_previous(b"f", |prev, this| (*prev, *this) == (1, 2)), Some(2));
    assert_eq!(pieces(&p), expect(&[("a", "c", 0), ("c", "m", 1), ("m", "z", 3)]));
    assert_eq!(p.merge_into_previous(b"z", |_, _| true), None, "the span end starts no piece");
    assert_eq!(p.merge_into_previous(b"m", |_, _| true), Some(3));
    assert_eq!(p.merge_into_previous(b"c", |_, _| true), Some(1));
    assert_eq!(pieces(&p), expect(&[("a", "z", 0)]));
    assert_eq!(p.check_invariants(), Ok(()));
}

#[test]
fn partition_runs() {
    let mut p = four_pieces();
    p.split_at(b"p", |_| 4).unwrap();
    // Values 0 1 2 3 4 over [a c f m p z): runs of odd values, and of values below 3.
    let odd = |v: &u32| v % 2 == 1;
    assert_eq!(p.runs(&Span::full(), odd), [sp(b"c", b"f"), sp(b"m", b"p")]);
    assert_eq!(p.runs(&Span::full(), |v| *v < 3), [sp(b"a", b"m")]);
    assert_eq!(p.runs(&sp(b"b", b"d"), |v| *v < 3), [sp(b"b", b"d")]);
    assert_eq!(p.runs(&sp(b"d", b"n"), |v| *v >= 1), [sp(b"d", b"n")]);
    assert_eq!(p.runs(&sp(b"d", b"n"), |_| false), []);
    assert_eq!(p.runs(&sp(b"z", b""), |_| true), []);
    assert_eq!(p.runs(&sp(b"", b"a"), |_| true), []);
}

#[test]
fn partition_exact_start_lookups() {
    let p = four_pieces();
    #[track_caller]
    fn check(p: &Partition<u32>, start: &[u8], piece: Option<(&str, &str, u32)>) {
        let got = p.piece_starting_at(start).map(|p| (p.start.to_vec(), p.end.to_vec(), *p.value));
        let want = piece.map(|(s, e, v)| (s.as_bytes().to_vec(), e.as_bytes().to_vec(), v));
        assert_eq!(got, want, "piece_starting_at({start:?})");
        let end = p.end_of_piece(start).map(|e| e.to_vec());
        assert_eq!(end, want.as_ref().map(|w| w.1.clone()), "end_of_piece({start:?})");
        assert_eq!(p.get_exact(start), want.as_ref().map(|w| &w.2), "get_exact({start:?})");
    }
    check(&p, b"a", Some(("a", "c", 0)));
    check(&p, b"f", Some(("f", "m", 2)));
    check(&p, b"m", Some(("m", "z", 3)));
    check(&p, b"", None);
    check(&p, b"d", None);
    check(&p, b"f\x00", None);
    check(&p, b"z", None);
    let full = Partition::new(Span::full(), 1u32);
    check(&full, b"", Some(("", "", 1)));
}

#[test]
fn partition_insert_boundary_and_remove_interior() {
    let mut p = four_pieces();
    assert_eq!(p.insert_boundary(b"d", 7), Ok(None), "a new boundary, value taken as given");
    assert_eq!(p.insert_boundary(b"f", 8), Ok(Some(2)), "an existing boundary: value replaced");
    assert_eq!(p.insert_boundary(b"z", 9), Err(OutOfSpan { range: sp(b"z", b"") }));
    assert_eq!(
        pieces(&p),
        expect(&[("a", "c", 0), ("c", "d", 1), ("d", "f", 7), ("f", "m", 8), ("m", "z", 3)])
    );
    let mut removed = Vec::new();
    // Pieces starting strictly inside (c, n): d, f, m; the piece at c grows over them.
    p.remove_interior(&sp(b"c", b"n"), |v| removed.push(v));
    assert_eq!(removed, [7, 8, 3]);
    assert_eq!(pieces(&p), expect(&[("a", "c", 0), ("c", "z", 1)]));
    p.remove_interior(&sp(b"c", b"z"), |_| panic!("nothing inside"));
    // The range starts at a piece start (the contract); its end may be plus infinity.
    p.remove_interior(&sp(b"a", b""), |v| removed.push(v));
    assert_eq!(removed, [7, 8, 3, 1]);
    assert_eq!(pieces(&p), expect(&[("a", "z", 0)]));
    assert_eq!(p.check_invariants(), Ok(()));
}

#[test]
fn partition_overlapping_rev() {
    #[track_caller]
    fn check(range: Span, end_is_boundary: bool, expected: &[(&str, u32)]) {
        let p = four_pieces();
        let (boundary, pieces) = p.overlapping_rev(&range);
        let got: Vec<(Vec<u8>, u32)> = pieces.map(|(k, v)| (k.to_vec(), *v)).collect();
        let want: Vec<(Vec<u8>, u32)> =
            expected.iter().map(|(k, v)| (k.as_bytes().to_vec(), *v)).collect();
        assert_eq!((boundary, &got), (end_is_boundary, &want), "{range:?}");
        // The same pieces as `overlapping`, reversed.
        let forward: Vec<(Vec<u8>, u32)> =
            p.overlapping(&range).map(|p| (p.start.to_vec(), *p.value)).collect();
        assert!(forward.iter().rev().eq(want.iter()), "{range:?}");
    }
    check(sp(b"d", b"g"), false, &[("f", 2), ("c", 1)]);
    check(sp(b"c", b"f"), true, &[("c", 1)]);
    check(sp(b"c", b"m"), true, &[("f", 2), ("c", 1)]);
    check(sp(b"b", b"c\x00"), false, &[("c", 1), ("a", 0)]);
    check(sp(b"a", b"z"), true, &[("m", 3), ("f", 2), ("c", 1), ("a", 0)]);
    check(sp(b"n", b"z"), true, &[("m", 3)]);
    check(sp(b"a", b"a\x00"), false, &[("a", 0)]);
    let mut full = Partition::new(Span::full(), 0u32);
    full.split_at(b"k", |_| 1).unwrap();
    let range = sp(b"j", b"");
    let (boundary, pieces) = full.overlapping_rev(&range);
    assert!(boundary, "plus infinity is the span's end");
    assert_eq!(
        pieces.map(|(k, v)| (k.to_vec(), *v)).collect::<Vec<_>>(),
        [(b"k".to_vec(), 1), (Vec::new(), 0)]
    );
}

/// A resolved ts per part of a table's span: unset while a region holds it, set when released
/// (once the example of `kvfeed-span`'s README).
#[test]
fn a_table_head_is_unset_then_set() {
    let span = table::table_span(8616);
    let split = EncodedKey::encode(&table::record_key(8616, 1000));
    let head = Span::new(span.start().clone(), split).unwrap();
    let mut map = RangeTsMap::new(span.clone(), 100);
    map.unset(&head).unwrap(); // a region locks the head of the table
    assert!(map.min_in(&span).is_err()); // part of the span is unset
    assert_eq!(map.min(), 100); // the tail is still at the start ts
    map.set(&head, 120).unwrap(); // the region releases it at ts 120
    assert_eq!(map.min_in(&span), Ok(100));
    assert_eq!(map.partition().piece_count(), 2);
}

/// A `RangeTsMap` operation with bound indices a little past the alphabet, so the modulo mapping
/// of `TsMapOp` is exercised too; ts values are few, so minimums tie.
fn ts_map_op() -> impl Strategy<Value = TsMapOp> {
    let bound = 0..(KEYS.len() as u8 + 4);
    let ts = prop_oneof![0..4u64, Just(u64::MAX), any::<u64>()];
    prop_oneof![
        3 => (bound.clone(), bound.clone(), ts).prop_map(|(start, end, ts)| TsMapOp::Set { start, end, ts }),
        3 => (bound.clone(), bound.clone()).prop_map(|(start, end)| TsMapOp::Unset { start, end }),
        2 => (bound.clone(), bound.clone()).prop_map(|(start, end)| TsMapOp::MinIn { start, end }),
        1 => Just(TsMapOp::Min),
        1 => (bound.clone(), bound.clone()).prop_map(|(start, end)| TsMapOp::UnsetRuns { start, end }),
        1 => (bound.clone(), bound.clone()).prop_map(|(start, end)| TsMapOp::Overlapping { start, end }),
        1 => (bound.clone(), bound.clone()).prop_map(|(start, end)| TsMapOp::OverlappingRev { start, end }),
        1 => (bound, proptest::option::of(proptest::sample::select(&[0x00u8, 0x01, 0xFF][..])))
            .prop_map(|(key, suffix)| TsMapOp::PieceAt { key, suffix }),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x6b76_6665_6564),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    })]

    #[test]
    fn ts_map_agrees_with_the_model(
        start in 0..10u8,
        end in 0..10u8,
        initial_ts in prop_oneof![0..4u64, Just(u64::MAX)],
        ops in proptest::collection::vec(ts_map_op(), 0..64),
    ) {
        ts_map::check_ts_map(start, end, initial_ts, &ops);
    }
}
