//! Spans (§4, §10 H items 25-26, §11 item 17): bound comparisons, validation, containment,
//! intersection, sub-spans and ordering, with empty bounds as infinities everywhere.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec::Vec;
use core::cmp::Ordering::{self, Equal, Greater, Less};
use core::ops::Bound;

use super::{ek, sp};
use crate::key::encode;
use crate::{Span, SpanError, below_end, cmp_end, cmp_start};

#[test]
fn start_and_end_compare() {
    // §10 H item 25. Go's nil and zero-length keys are one thing here: an empty slice.
    #[track_caller]
    fn check(a: &[u8], b: &[u8], start: Ordering, end: Ordering) {
        assert_eq!(cmp_start(a, b), start, "cmp_start({a:?}, {b:?})");
        assert_eq!(cmp_end(a, b), end, "cmp_end({a:?}, {b:?})");
        assert_eq!(cmp_start(b, a), start.reverse(), "cmp_start({b:?}, {a:?})");
        assert_eq!(cmp_end(b, a), end.reverse(), "cmp_end({b:?}, {a:?})");
    }
    check(b"", b"", Equal, Equal);
    check(b"", b"a", Less, Greater);
    check(b"", b"\x00", Less, Greater);
    check(b"a", b"a", Equal, Equal);
    check(b"a", b"b", Less, Less);
    check(b"a", b"a\x00", Less, Less);
    check(b"\xFF", b"\xFF\xFF", Less, Less);
}

#[test]
fn below_end_treats_empty_end_as_plus_infinity() {
    #[track_caller]
    fn check(key: &[u8], end: &[u8], below: bool) {
        assert_eq!(below_end(key, end), below, "below_end({key:?}, {end:?})");
    }
    check(b"", b"", true);
    check(b"\xFF\xFF\xFF", b"", true);
    check(b"", b"a", true);
    check(b"a", b"a", false);
    check(b"a\x00", b"a", false);
    check(b"a", b"a\x00", true);
}

#[test]
fn new_validates() {
    #[track_caller]
    fn check(start: &[u8], end: &[u8], ok: bool) {
        match Span::from_bytes(start, end) {
            Ok(span) => {
                assert!(ok, "[{start:?}, {end:?}) should be refused");
                assert_eq!((span.start().as_bytes(), span.end().as_bytes()), (start, end));
                assert_eq!(span.is_start_unbounded(), start.is_empty());
                assert_eq!(span.is_end_unbounded(), end.is_empty());
            }
            Err(error) => {
                assert!(!ok, "[{start:?}, {end:?}) should be accepted, got {error}");
                assert_eq!(error, SpanError::Empty { start: ek(start), end: ek(end) });
            }
        }
    }
    check(b"", b"", true); // (-inf, +inf)
    check(b"a", b"", true); // [a, +inf)
    check(b"", b"a", true); // (-inf, a)
    check(b"\xFF\xFF", b"", true);
    check(b"", b"\x00", true);
    check(b"a", b"b", true);
    check(b"a", b"a\x00", true);
    check(b"a", b"a", false);
    check(b"b", b"a", false);
    check(b"a\x00", b"a", false);
    assert_eq!(Span::full(), sp(b"", b""));
    assert_eq!(
        format!("{}", Span::from_bytes(b"b", b"a").unwrap_err()),
        "span start enc:62 is not below its end enc:61"
    );
    assert_eq!(format!("{}", SpanError::Disjoint), "spans do not overlap");
}

#[test]
fn bounds_and_debug() {
    #[track_caller]
    fn check(span: Span, start: Bound<&[u8]>, end: Bound<&[u8]>, debug: &str) {
        assert_eq!((span.start_bound(), span.end_bound()), (start, end), "{span:?}");
        assert_eq!(format!("{span:?}"), debug);
        let (s, e) = span.clone().into_bounds();
        assert_eq!(Span::new(s, e), Ok(span));
    }
    use Bound::{Excluded, Included, Unbounded};
    check(Span::full(), Unbounded, Unbounded, "[-inf, +inf)");
    check(sp(b"a", b""), Included(b"a"), Unbounded, "[61, +inf)");
    check(sp(b"", b"b"), Unbounded, Excluded(b"b"), "[-inf, 62)");
    check(sp(b"a", b"b"), Included(b"a"), Excluded(b"b"), "[61, 62)");
}

#[test]
fn contains_key_honours_infinities() {
    // §11 item 17: an empty end is plus infinity for containment too.
    #[track_caller]
    fn check(span: &Span, key: &[u8], inside: bool) {
        assert_eq!(span.contains_key(key), inside, "{span:?} contains {key:02X?}");
    }
    let full = Span::full();
    check(&full, b"", true);
    check(&full, b"\xFF\xFF\xFF\xFF", true);
    let from_a = sp(b"a", b"");
    check(&from_a, b"", false);
    check(&from_a, b"\x00", false);
    check(&from_a, b"a", true);
    check(&from_a, b"\xFF\xFF\xFF\xFF", true);
    let below_b = sp(b"", b"b");
    check(&below_b, b"", true);
    check(&below_b, b"a\xFF", true);
    check(&below_b, b"b", false);
    let a_b = sp(b"a", b"b");
    check(&a_b, b"a", true);
    check(&a_b, b"a\xFF\xFF", true);
    check(&a_b, b"b", false);
    check(&a_b, b"\x00", false);
}

#[test]
fn contains_raw_key_encodes_first() {
    #[track_caller]
    fn check(span: &Span, raw: &[u8], inside: bool) {
        assert_eq!(span.contains_raw_key(raw), inside, "{span:?} contains raw {raw:02X?}");
        assert_eq!(span.contains_key(&encode(raw)), inside, "{span:?} contains enc({raw:02X?})");
    }
    let b_to_d = Span::from_bytes(&encode(b"b"), &encode(b"d")).unwrap();
    check(&b_to_d, b"a", false);
    check(&b_to_d, b"b", true);
    check(&b_to_d, b"c\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", true);
    check(&b_to_d, b"d", false);
    // A raw key equal to an encoded bound's bytes is not the bound: "b" sorts below enc("b").
    let b_up = Span::from_bytes(&encode(b"b"), b"").unwrap();
    check(&b_up, b"b", true);
    check(&b_up, b"a\xFF", false);
    assert!(!Span::from_bytes(&encode(b"b\x00"), b"").unwrap().contains_raw_key(b"b"));
    check(&Span::full(), b"", true);
    check(&Span::from_bytes(b"", &encode(b"")).unwrap(), b"", false);
}

#[test]
fn intersect_table() {
    // §10 H item 26: the intersection table of §4 (keys as single bytes), symmetry and touching
    // spans, plus unbounded cases.
    #[track_caller]
    fn check(a: Span, b: Span, expected: Option<Span>) {
        let expected = expected.ok_or(SpanError::Disjoint);
        assert_eq!(a.intersect(&b), expected, "{a:?} ∩ {b:?}");
        assert_eq!(b.intersect(&a), expected, "{b:?} ∩ {a:?} (symmetry)");
        assert_eq!(a.overlaps(&b), expected.is_ok(), "{a:?} overlaps {b:?}");
        assert_eq!(b.overlaps(&a), expected.is_ok(), "{b:?} overlaps {a:?}");
        if let Ok(both) = &expected {
            assert!(both.is_sub_span(&a) && both.is_sub_span(&b), "{both:?} lies in both");
        }
    }
    let full = Span::full;
    check(sp(b"", b"\x01"), sp(b"\x01", b""), None);
    check(full(), full(), Some(full()));
    check(sp(b"\x00", b"\x03"), sp(b"\x01", b"\x02"), Some(sp(b"\x01", b"\x02")));
    check(sp(b"\x00", b"\x02"), sp(b"\x01", b"\x02"), Some(sp(b"\x01", b"\x02")));
    check(sp(b"a", b"b"), sp(b"b", b"c"), None);
    check(sp(b"a", b"b"), sp(b"c", b"d"), None);
    check(sp(b"a", b"c"), sp(b"b", b"d"), Some(sp(b"b", b"c")));
    check(sp(b"a", b""), sp(b"", b"b"), Some(sp(b"a", b"b")));
    check(sp(b"a", b""), sp(b"b", b""), Some(sp(b"b", b"")));
    check(sp(b"a", b"c"), sp(b"b", b""), Some(sp(b"b", b"c")));
    check(sp(b"", b"b"), sp(b"", b"c"), Some(sp(b"", b"b")));
    check(full(), sp(b"a", b"b"), Some(sp(b"a", b"b")));
    check(sp(b"a", b""), sp(b"", b"a"), None);
    check(sp(b"a", b"a\x00"), sp(b"a", b"a\x00"), Some(sp(b"a", b"a\x00")));
    check(sp(b"a", b"a\x00"), sp(b"a\x00", b""), None);
}

#[test]
fn is_sub_span_honours_infinities() {
    // §11 item 17: the original's `IsSubSpan` panicked on a sub span with an empty end.
    #[track_caller]
    fn check(sub: Span, parent: Span, expected: bool) {
        assert_eq!(sub.is_sub_span(&parent), expected, "{sub:?} ⊆ {parent:?}");
    }
    let full = Span::full;
    check(sp(b"a", b""), full(), true);
    check(sp(b"a", b""), sp(b"a", b"z"), false);
    check(sp(b"a", b""), sp(b"a", b""), true);
    check(sp(b"b", b""), sp(b"a", b""), true);
    check(sp(b"a", b""), sp(b"b", b""), false);
    check(full(), sp(b"a", b""), false);
    check(full(), full(), true);
    check(sp(b"", b"b"), full(), true);
    check(sp(b"", b"b"), sp(b"a", b""), false);
    check(sp(b"a", b"b"), sp(b"a", b""), true);
    check(sp(b"a", b"b"), sp(b"a", b"b"), true);
    check(sp(b"a", b"b"), sp(b"a", b"a\xFF"), false);
    check(sp(b"a", b"b"), sp(b"b", b"c"), false);
    let parents = [sp(b"a", b"c"), sp(b"x", b"")];
    assert!(sp(b"y", b"").is_sub_span_of_any(&parents));
    assert!(sp(b"a", b"b").is_sub_span_of_any(&parents));
    assert!(!sp(b"b", b"d").is_sub_span_of_any(&parents));
    assert!(!sp(b"a", b"b").is_sub_span_of_any(&[]));
}

#[test]
fn ordering_is_a_strict_total_order() {
    // §11 item 17: the original's `Span.Less` mixed table ids and start keys and ignored ends.
    // Here spans order by start (minus infinity first), then by end (plus infinity last).
    let sorted = [
        sp(b"", b"a"),
        sp(b"", b"b"),
        sp(b"", b""),
        sp(b"a", b"a\x00"),
        sp(b"a", b"b"),
        sp(b"a", b""),
        sp(b"a\x00", b"b"),
        sp(b"b", b"c"),
        sp(b"b", b""),
        crate::table::table_span(1),
        crate::table::table_span(2),
        sp(b"\xFF", b""),
    ];
    let mut shuffled: Vec<Span> = sorted.iter().rev().cloned().collect();
    shuffled.swap(0, 5);
    shuffled.swap(2, 9);
    shuffled.sort();
    assert_eq!(shuffled, sorted);
    for (i, a) in sorted.iter().enumerate() {
        for (j, b) in sorted.iter().enumerate() {
            // Antisymmetric, and equal only to itself (consistent with `Eq`).
            assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
            assert_eq!(a.partial_cmp(b), Some(i.cmp(&j)));
            assert_eq!(a == b, i == j);
            for c in &sorted {
                if a < b && b < c {
                    assert!(a < c, "transitivity: {a:?} < {b:?} < {c:?}");
                }
            }
        }
    }
}

#[test]
fn spans_differing_only_in_end_do_not_collide() {
    // §10 H item 29: the original's `BtreeMap` was keyed by table id and start key, so two spans
    // differing only in their end replaced each other. Ordered collections of spans keep both.
    let set: BTreeSet<Span> =
        [sp(b"a", b"b"), sp(b"a", b"c"), sp(b"a", b""), sp(b"a", b"b")].into();
    assert_eq!(set.len(), 3);
    assert_eq!(
        set.iter().cloned().collect::<Vec<_>>(),
        [sp(b"a", b"b"), sp(b"a", b"c"), sp(b"a", b"")]
    );
}
