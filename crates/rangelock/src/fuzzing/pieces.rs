//! Differential checking of the range lock's piece index against [`Partition`], a plain
//! `BTreeMap` partition with the same semantics.
//!
//! The lock's own model (the parent module) uses eight keys, too few to split a leaf; here keys
//! come from a space of thousands, in shapes that stress the tags: a long shared prefix, keys that
//! differ only past the 8 tag bytes, keys that are another plus zero bytes, and keys too long to
//! be stored inline. [`check`] applies the operations to both and panics, naming the step, at the
//! first difference in a result, in the pieces or in an invariant. The cargo-fuzz target
//! `rangelock_pieces` and a proptest in the crate's tests drive it.

use alloc::format;
use alloc::vec::Vec;

use kvfeed_span::{EncodedKey, Span};

use super::partition::Partition;
use crate::pieces::Pieces;

/// One operation on both partitions.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Make a key a piece start with a value.
    Insert {
        /// The key (see [`key`]).
        key: u16,
        /// The value.
        value: u32,
    },
    /// Insert `count` consecutive keys from `key` upwards (ascending inserts fill leaves).
    InsertRun {
        /// The first key.
        key: u16,
        /// How many.
        count: u8,
    },
    /// Remove the piece starts strictly inside a range.
    RemoveInterior {
        /// Range start.
        start: u16,
        /// Range end (`None`: plus infinity).
        end: Option<u16>,
    },
    /// Compare the pieces overlapping a range, both directions.
    Query {
        /// Range start.
        start: u16,
        /// Range end (`None`: plus infinity).
        end: Option<u16>,
        /// The finger to start the cover from: the last lookup's leaf, or this leaf id.
        finger: Option<u8>,
    },
    /// Insert a range's end where the range's cover located it, as a lock does.
    InsertEnd {
        /// Range start.
        start: u16,
        /// Range end.
        end: u16,
        /// The value.
        value: u32,
    },
    /// Compare the piece starting at a key.
    StartingAt {
        /// The key.
        key: u16,
        /// The finger to start from: the last lookup's leaf, or this leaf id.
        finger: Option<u8>,
    },
}

/// A whole case: the span and the operations.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Case {
    /// Partition `[key(lo), key(hi))` instead of the whole key space.
    pub bounds: Option<(u16, u16)>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// The key numbered `n`, in key order for a fixed shape. The top two bits pick the shape; keys of
/// different shapes interleave in order too.
pub fn key(n: u16) -> EncodedKey {
    let low = n & 0x3fff;
    let [hi, lo] = low.to_be_bytes();
    let bytes: Vec<u8> = match n >> 14 {
        // Short keys.
        0 => alloc::vec![b'a', hi, lo],
        // A 20-byte shared prefix, then the number.
        1 => [&[b'p'; 20][..], &[hi, lo]].concat(),
        // Equal for 8 bytes past a shared prefix, different after: ties on the tag.
        2 => [&[b'q'; 4][..], &[0u8; 8], &[hi, lo], &[0u8; 2][..(n % 3) as usize]].concat(),
        // Longer than the inline limit.
        _ => [&[b'r'; 33][..], &[hi, lo]].concat(),
    };
    EncodedKey::from_encoded(bytes)
}

fn range(start: u16, end: Option<u16>) -> Option<Span> {
    Span::new(key(start), end.map_or_else(EncodedKey::default, key)).ok()
}

/// Applies `case` to a [`Pieces`] and a `Partition<u32>`, panicking at the first difference.
pub fn check(case: &Case) {
    let span = match case.bounds {
        Some((lo, hi)) => match range(lo, Some(hi)) {
            Some(span) => span,
            None => return,
        },
        None => Span::full(),
    };
    let mut pieces = Pieces::new(span.clone(), 0);
    // The leaf of the last lookup, as the range lock keeps it.
    let mut last_leaf = 0u32;
    let mut model = Partition::new(span, 0u32);
    for (step, op) in case.ops.iter().enumerate() {
        match *op {
            Op::Insert { key: k, value } => insert(&mut pieces, &mut model, &key(k), value, step),
            Op::InsertRun { key: k, count } => {
                for i in 0..u16::from(count) {
                    let n = k.wrapping_add(i);
                    insert(&mut pieces, &mut model, &key(n), u32::from(n), step);
                }
            }
            Op::RemoveInterior { start, end } => {
                let Some(range) = range(start, end) else { continue };
                if !range.overlaps(model.span()) {
                    continue;
                }
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                pieces.remove_interior(&range, |v| ours.push(v));
                model.remove_interior(&range, |v| theirs.push(v));
                assert_eq!(ours, theirs, "step {step}: removed values of {op:?}");
            }
            Op::Query { start, end, finger } => {
                let Some(range) = range(start, end) else { continue };
                if range.is_sub_span(model.span()) {
                    // The cover a lock works from: the slots, whether the range starts at a
                    // piece and whether its end is a boundary, as the model's reverse walk says.
                    let cover = pieces.cover(&range, finger.map_or(last_leaf, u32::from));
                    last_leaf = cover.last.0;
                    let ours: Vec<u32> = pieces.cover_slots(&cover).collect();
                    let (theirs_end, theirs) = model.overlapping_rev(&range);
                    let mut theirs: Vec<(EncodedKey, u32)> =
                        theirs.map(|(k, v)| (k.clone(), *v)).collect();
                    theirs.reverse();
                    let theirs_start = theirs.first().is_some_and(|(k, _)| k == range.start());
                    let theirs: Vec<u32> = theirs.into_iter().map(|(_, v)| v).collect();
                    assert_eq!(ours, theirs, "step {step}: cover of {op:?}");
                    assert_eq!(
                        cover.start_is_boundary, theirs_start,
                        "step {step}: start of {op:?}"
                    );
                    assert_eq!(cover.end_at.is_none(), theirs_end, "step {step}: end of {op:?}");
                }
                let ours: Vec<_> = pieces.overlapping(&range).map(|p| p.span()).collect();
                let theirs: Vec<_> = model.overlapping(&range).map(|p| p.span()).collect();
                assert_eq!(ours, theirs, "step {step}: pieces of {op:?}");
            }
            Op::InsertEnd { start, end, value } => {
                let Some(range) = range(start, Some(end)) else { continue };
                if !range.is_sub_span(model.span()) {
                    continue;
                }
                if let Some(at) = pieces.cover(&range, last_leaf).end_at {
                    pieces.insert_located(at, range.end().clone(), value);
                    let theirs = model.insert_boundary(range.end().as_bytes(), value);
                    assert_eq!(theirs, Ok(None), "step {step}: {op:?} was not a boundary");
                }
            }
            Op::StartingAt { key: n, finger } => {
                // The lookup unlock makes: the piece starting at a key, and whether it ends at
                // a given end (its true end, and a neighbouring key).
                let k = key(n);
                let theirs = model.piece_starting_at(k.as_bytes()).map(|p| p.end.clone());
                let candidates = [theirs.clone().unwrap_or_default(), key(n.wrapping_add(1))];
                for end in candidates {
                    let finger = finger.map_or(last_leaf, u32::from);
                    let found = pieces.find_starting_at(&k, &end, finger);
                    if let Some(((leaf, _), _)) = found {
                        last_leaf = leaf;
                    }
                    let ours = found.map(|(_, ends)| ends);
                    let expected = theirs.as_ref().map(|e| *e == end);
                    assert_eq!(ours, expected, "step {step}: piece at {k:?} ending at {end:?}");
                }
            }
        }
        if let Err(broken) = pieces.check_invariants() {
            panic!("step {step} ({op:?}): {broken}");
        }
        let ours: Vec<_> = pieces.iter().map(|p| (p.span(), p.slot)).collect();
        let theirs: Vec<_> = model.iter().map(|p| (p.span(), *p.value)).collect();
        assert!(ours == theirs, "{}", format!("step {step} ({op:?}): the pieces differ"));
    }
}

fn insert(
    pieces: &mut Pieces,
    model: &mut Partition<u32>,
    key: &EncodedKey,
    value: u32,
    step: usize,
) {
    let ours = pieces.insert_boundary(key, value).ok();
    let theirs = model.insert_boundary(key.as_bytes(), value).ok();
    assert_eq!(ours, theirs, "step {step}: insert {key:?}");
}
