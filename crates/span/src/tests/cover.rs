//! Left cover (§3.9, §10 C, §11 item 17).

use alloc::vec::Vec;

use super::sp;
use crate::{LeftCover, Span, cut_regions_left_cover};

/// Checks the cover of `span` by `regions`: the regions kept (by value, in key order) and whether
/// the span's end is reached.
#[track_caller]
fn check(regions: &[Span], span: Span, kept: &[Span], covers_end: bool) {
    let before = regions.to_vec();
    let cover = cut_regions_left_cover(regions, &span);
    let got: Vec<Span> = cover.regions.iter().map(|r| (*r).clone()).collect();
    assert_eq!((got.as_slice(), cover.covers_end), (kept, covers_end), "{regions:?} over {span:?}");
    assert_eq!(regions, before.as_slice(), "the caller's regions are left as they were");
}

#[test]
fn original_cases() {
    // §10 C item 10, one line per case of the original (keys as single bytes).
    let s = |a: u8, b: u8| sp(&[a], &[b]);
    check(&[], s(1, 2), &[], false); // empty regions: none
    check(&[Span::full()], s(1, 2), &[Span::full()], true); // one unbounded region
    check(&[s(1, 2)], s(1, 2), &[s(1, 2)], true); // exact
    check(&[s(0, 4)], s(1, 2), &[s(0, 4)], true); // superset
    check(&[s(1, 2), s(2, 3)], s(1, 3), &[s(1, 2), s(2, 3)], true); // contiguous pair
    check(&[s(1, 2), s(3, 4)], s(1, 4), &[s(1, 2)], false); // gap: keeps the first
    // A contiguous pair shorter than the span: the original said it "covers"; the regions are
    // still returned, but the end is not reached.
    check(&[s(1, 2), s(2, 3)], s(1, 4), &[s(1, 2), s(2, 3)], false);
    check(&[s(2, 3)], s(1, 3), &[], false); // first region starts after the span: none
}

#[test]
fn more_cases() {
    let s = |a: u8, b: u8| sp(&[a], &[b]);
    let from = |a: u8| sp(&[a], b"");
    let below = |b: u8| sp(b"", &[b]);
    // Input order does not matter (the regions are taken in key order).
    check(&[s(3, 4), s(1, 2), s(2, 3)], s(1, 4), &[s(1, 2), s(2, 3), s(3, 4)], true);
    // Regions entirely before the span are skipped; the run stops once the end is reached.
    check(&[s(0, 1), s(1, 3), s(3, 5), s(5, 6)], s(2, 4), &[s(1, 3), s(3, 5)], true);
    // A region ending exactly at the span start does not contain it.
    check(&[s(0, 2), s(2, 3)], s(2, 3), &[s(2, 3)], true);
    check(&[s(0, 2)], s(2, 3), &[], false);
    // An empty region end is plus infinity (§11 item 17: the original compared it as a start).
    check(&[s(0, 1), from(1)], s(0, 9), &[s(0, 1), from(1)], true);
    check(&[s(0, 1), from(1)], from(0), &[s(0, 1), from(1)], true);
    check(&[from(0)], from(5), &[from(0)], true);
    check(&[s(0, 9)], from(5), &[s(0, 9)], false);
    // A span starting at minus infinity needs a region starting there too.
    check(&[below(1), from(1)], Span::full(), &[below(1), from(1)], true);
    check(&[s(0, 1), from(1)], Span::full(), &[], false);
    check(&[below(1), s(1, 2)], below(5), &[below(1), s(1, 2)], false);
    // Overlapping regions (stale ones): the run stops at the first region in key order that does
    // not start exactly at the previous end, as in the original.
    check(&[s(0, 3), s(1, 4), s(3, 5)], s(1, 5), &[s(0, 3)], false);
    check(&[s(0, 3), s(2, 5)], s(1, 5), &[s(0, 3)], false);
}

/// A region as PD reports it: an id beside its span.
#[derive(Debug, PartialEq, Eq)]
struct Region {
    id: u64,
    span: Span,
}

impl AsRef<Span> for Region {
    fn as_ref(&self) -> &Span {
        &self.span
    }
}

#[test]
fn returns_references_into_the_callers_regions() {
    let regions = [
        Region { id: 3, span: sp(b"c", b"") },
        Region { id: 1, span: sp(b"", b"b") },
        Region { id: 2, span: sp(b"b", b"c") },
    ];
    let LeftCover { regions: kept, covers_end } = cut_regions_left_cover(&regions, &sp(b"a", b""));
    assert!(covers_end);
    assert_eq!(kept.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(core::ptr::eq(kept[0], &regions[1]), "references into the slice, not copies");
    assert_eq!(regions.map(|r| r.id), [3, 1, 2], "the slice is not sorted in place");
}
