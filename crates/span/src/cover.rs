//! Left cover: which prefix of a region list covers a span contiguously from its start.
//!
//! PD answers a region scan with the regions it knows; between a split and its report there may be
//! gaps. [`cut_regions_left_cover`] keeps the longest run that covers the span from its start with
//! no gap, so the caller can lock those and ask again for the rest. Unlike the original it does not
//! sort the caller's list in place, compares ends with end semantics (an empty end is plus
//! infinity), and says whether the span's end was reached.

use alloc::vec::Vec;

use crate::span::{Span, below_end, cmp_end};

/// The regions that cover a span from its start, in key order.
#[derive(Debug, PartialEq, Eq)]
pub struct LeftCover<'a, R> {
    /// The longest gap-free run of regions starting at or before the span's start.
    pub regions: Vec<&'a R>,
    /// Whether the run reaches the span's end (the span is covered completely).
    pub covers_end: bool,
}

/// The longest prefix of `regions` (taken in start-key order) that covers `span` contiguously from
/// its start, and whether it reaches the span's end. Regions entirely before the span's start are
/// skipped; the input is not modified.
pub fn cut_regions_left_cover<'a, R: AsRef<Span>>(
    regions: &'a [R],
    span: &Span,
) -> LeftCover<'a, R> {
    let mut sorted: Vec<&R> = regions.iter().collect();
    sorted.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut cover = Vec::new();
    // The first key not yet covered; `None` once plus infinity is reached.
    let mut next: Option<&[u8]> = Some(span.start().as_bytes());
    for region in sorted {
        let Some(want) = next else { break };
        let r = region.as_ref();
        if cover.is_empty() {
            // The first region must contain the span's start.
            if !r.contains_key(want) {
                if r.start().as_bytes() > want {
                    break;
                }
                continue;
            }
        } else if r.start().as_bytes() != want {
            break;
        }
        cover.push(region);
        next = if r.is_end_unbounded() { None } else { Some(r.end().as_bytes()) };
        if let Some(reached) = next
            && !below_end(reached, span.end().as_bytes())
        {
            break;
        }
    }
    let covers_end = !cover.is_empty()
        && next.is_none_or(|reached| cmp_end(reached, span.end().as_bytes()).is_ge());
    LeftCover { regions: cover, covers_end }
}
