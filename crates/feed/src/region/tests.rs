//! Row pipeline scenarios: reference §10 E14, F16-F20, L49/L51/L55/L56 and the fixes of §11
//! items 18 (cached commits get the live checks) and 19 (orphan prewrites are collected).

use std::sync::Arc;

use bytes::Bytes;
use kvfeed_span::{EncodedKey, Span};
use kvfeed_transport::{Row, RowKind, RowOp};

use super::{RegionRows, RowError};
use crate::event::{Op, RowEvent};
use crate::prewrite_cache::PrewriteCache;

/// A row of `kind` for raw key `key`. Values are given as strings; "" is empty.
fn row(
    kind: RowKind,
    op: RowOp,
    key: &str,
    start_ts: u64,
    commit_ts: u64,
    value: &str,
    old: &str,
) -> Row {
    Row {
        start_ts,
        commit_ts,
        kind,
        op,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        old_value: Bytes::copy_from_slice(old.as_bytes()),
        txn_source: 0,
        generation: 0,
    }
}

fn prewrite(key: &str, start: u64, value: &str, old: &str) -> Row {
    row(RowKind::Prewrite, RowOp::Put, key, start, 0, value, old)
}

fn commit(key: &str, start: u64, commit: u64) -> Row {
    row(RowKind::Commit, RowOp::Put, key, start, commit, "", "")
}

fn rollback(key: &str, start: u64) -> Row {
    row(RowKind::Rollback, RowOp::Unspecified, key, start, 0, "", "")
}

fn committed(key: &str, start: u64, commit: u64, value: &str) -> Row {
    row(RowKind::Committed, RowOp::Put, key, start, commit, value, "")
}

fn initialized() -> Row {
    row(RowKind::Initialized, RowOp::Unspecified, "", 0, 0, "", "")
}

fn put(key: &str, start: u64, commit: u64, value: &str, old: &str) -> RowEvent {
    RowEvent {
        op: Op::Put,
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        old_value: (!old.is_empty()).then(|| Bytes::copy_from_slice(old.as_bytes())),
        start_ts: start,
        commit_ts: commit,
    }
}

/// A region over the raw keys `[a, z)` of a subscription started at `start_ts`, from
/// `checkpoint_ts`.
fn region(start_ts: u64, checkpoint_ts: u64) -> RegionRows {
    let span = Span::new(EncodedKey::encode(b"a"), EncodedKey::encode(b"z")).expect("a < z");
    RegionRows::new(span, start_ts, checkpoint_ts)
}

/// Applies `rows`, returning what was delivered. Every value goes through the disk (a cache
/// with no memory share): the in-memory path is the one of every other test.
fn apply(region: &mut RegionRows, rows: Vec<Row>) -> Result<Vec<RowEvent>, RowError> {
    static SPILL_ALL: std::sync::LazyLock<Arc<PrewriteCache>> =
        std::sync::LazyLock::new(|| Arc::new(PrewriteCache::new(0, Some(std::env::temp_dir()))));
    let mut out = Vec::new();
    region.apply(rows, &SPILL_ALL, &mut out).map(|()| out)
}

/// The bytes a region's matcher held come back to the cache when its rows leave it and when
/// the region is dropped, in memory and on disk alike.
#[test]
fn the_cache_gets_every_byte_back() {
    for share in [0, usize::MAX] {
        let cache = Arc::new(PrewriteCache::new(share, Some(std::env::temp_dir())));
        let mut r = region(1, 1);
        let mut out = Vec::new();
        let rows = vec![
            prewrite("b", 5, "v5", "o5"),
            commit("c", 6, 7),
            prewrite("c", 6, "v6", ""),
            rollback("d", 8),
            prewrite("e", 9, &"x".repeat(1000), ""),
        ];
        r.apply(rows, &cache, &mut out).unwrap();
        assert!(cache.memory_bytes() > 0);
        assert_eq!(cache.disk_bytes() > 0, share == 0, "share {share}");
        r.apply(vec![initialized(), commit("b", 5, 10)], &cache, &mut out).unwrap();
        assert_eq!(out.len(), 2, "c and b delivered: {out:?}");
        assert_eq!(out[1].value, "v5");
        assert_eq!(out[1].old_value.as_deref(), Some(&b"o5"[..]));
        assert_eq!(r.pending_prewrites(), 1);
        drop(r);
        assert_eq!((cache.memory_bytes(), cache.disk_bytes()), (0, 0), "share {share}");
    }
}

/// A COMMIT event of many spilled values is read back a budget at a time: each call of
/// `apply_up_to` takes rows until the rows it appended hold the budget, and the values not
/// taken yet stay on disk.
#[test]
fn a_large_commit_is_read_back_a_slice_at_a_time() {
    let cache = Arc::new(PrewriteCache::new(0, Some(std::env::temp_dir())));
    let mut r = region(1, 1);
    let mut out = Vec::new();
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let value = "v".repeat(1000);
    let mut rows = vec![initialized()];
    rows.extend(keys.iter().map(|key| prewrite(key, 5, &value, "")));
    r.apply(rows, &cache, &mut out).unwrap();
    let spilled = cache.disk_bytes();
    assert!(spilled >= 10_000, "every value on disk: {spilled}");
    let mut commits = keys.iter().map(|key| commit(key, 5, 6));
    let mut slices = Vec::new();
    loop {
        out.clear();
        let more = r.apply_up_to(&mut commits, 2500, &cache, &mut out).unwrap();
        slices.push(out.len());
        assert!(out.iter().all(|row| row.value == value.as_bytes()));
        if !more {
            break;
        }
        assert!(cache.disk_bytes() > 0, "the rest waits on disk");
    }
    // Each row holds a little over 1000 bytes: three rows reach 2500.
    assert_eq!(slices, [3, 3, 3, 1]);
    assert_eq!((cache.memory_bytes(), cache.disk_bytes(), r.pending_prewrites()), (0, 0, 0));
}

#[test]
fn out_of_order_scan_with_a_fake_prewrite() {
    // §10 E14: fake prewrite, commit, real prewrite, INITIALIZED.
    let mut r = region(0, 0);
    let before =
        vec![prewrite("b", 1, "", "old"), commit("b", 1, 2), prewrite("b", 1, "new", "old")];
    assert_eq!(apply(&mut r, before), Ok(vec![]));
    assert_eq!(apply(&mut r, vec![initialized()]), Ok(vec![put("b", 1, 2, "new", "old")]));
    assert_eq!(r.pending_prewrites(), 0);
}

#[test]
fn rollback_drops_its_prewrite_only() {
    // §10 F16 (and L55: a commit without prewrite after the scan is an error).
    let mut r = region(0, 0);
    apply(&mut r, vec![initialized()]).unwrap();
    let rows = vec![prewrite("c", 1, "v1", ""), rollback("c", 1), prewrite("c", 3, "v3", "o3")];
    assert_eq!(apply(&mut r, rows), Ok(vec![]));
    assert_eq!(
        apply(&mut r, vec![commit("c", 1, 2)]),
        Err(RowError::CommitWithoutPrewrite {
            key: Bytes::from_static(b"c"),
            start_ts: 1,
            commit_ts: 2
        })
    );
    assert_eq!(apply(&mut r, vec![commit("c", 3, 4)]), Ok(vec![put("c", 3, 4, "v3", "o3")]));
}

#[test]
fn fake_prewrite_after_a_real_one_is_ignored() {
    // §10 F17.
    let mut r = region(0, 0);
    let rows = vec![initialized(), prewrite("d", 5, "real", "old"), prewrite("d", 5, "", "old")];
    assert_eq!(apply(&mut r, rows), Ok(vec![]));
    assert_eq!(apply(&mut r, vec![commit("d", 5, 6)]), Ok(vec![put("d", 5, 6, "real", "old")]));
}

#[test]
fn commits_wait_for_their_prewrite_during_the_scan() {
    // §10 F18: a commit against a fake prewrite is cached; a normal pair matches at once; after
    // the scan the cached commit meets the real prewrite.
    let mut r = region(0, 0);
    let rows = vec![
        prewrite("e", 1, "", "o"),
        commit("e", 1, 2),
        prewrite("f", 3, "f3", ""),
        commit("f", 3, 4),
    ];
    assert_eq!(apply(&mut r, rows), Ok(vec![put("f", 3, 4, "f3", "")]));
    let rows = vec![prewrite("e", 1, "e1", "o"), initialized()];
    assert_eq!(apply(&mut r, rows), Ok(vec![put("e", 1, 2, "e1", "o")]));
}

#[test]
fn cached_commits_match_exactly_and_in_order() {
    // §10 F19: cached commits without prewrites are dropped (the scan delivered them as
    // COMMITTED); the others match by exact (start ts, key), in cache order.
    let mut r = region(0, 0);
    let rows = vec![
        commit("g", 10, 11),
        commit("h", 20, 21),
        commit("g", 30, 31),
        commit("i", 40, 41),
        prewrite("h", 20, "h20", ""),
        prewrite("g", 10, "g10", ""),
        prewrite("g", 31, "wrong start ts", ""),
    ];
    assert_eq!(apply(&mut r, rows), Ok(vec![]));
    assert_eq!(
        apply(&mut r, vec![initialized()]),
        Ok(vec![put("g", 10, 11, "g10", ""), put("h", 20, 21, "h20", "")])
    );
    assert_eq!(r.pending_prewrites(), 1);
}

#[test]
fn cached_rollbacks_apply_after_the_scan() {
    // §10 F20.
    let mut r = region(0, 0);
    let rows =
        vec![rollback("j", 7), prewrite("j", 7, "v", ""), prewrite("k", 8, "w", ""), initialized()];
    assert_eq!(apply(&mut r, rows), Ok(vec![]));
    assert_eq!(r.pending_prewrites(), 1);
    assert!(apply(&mut r, vec![commit("j", 7, 9)]).is_err());
}

#[test]
fn cached_commits_get_the_live_checks() {
    // §11 item 18: the original released cached commits without the start-ts skip and without
    // the resolved-ts check. Subscription started at 50, region checkpoint 60.
    let mut r = region(50, 60);
    let rows = vec![
        commit("l", 40, 45),
        prewrite("l", 40, "old txn", ""),
        commit("m", 55, 58),
        prewrite("m", 55, "below checkpoint", ""),
        initialized(),
    ];
    // 45 <= start ts 50: skipped. 58 <= resolved ts 60: refused.
    assert_eq!(
        apply(&mut r, rows),
        Err(RowError::BelowResolvedTs {
            key: Bytes::from_static(b"m"),
            commit_ts: 58,
            resolved_ts: 60
        })
    );
}

#[test]
fn scan_rows_and_live_rows_below_the_resolved_ts() {
    // §10 L49 and L56.
    let mut r = region(10, 20);
    assert_eq!(
        apply(&mut r, vec![committed("n", 15, 25, "n25")]),
        Ok(vec![put("n", 15, 25, "n25", "")])
    );
    assert_eq!(
        apply(&mut r, vec![committed("n", 12, 19, "stale")]),
        Err(RowError::BelowResolvedTs {
            key: Bytes::from_static(b"n"),
            commit_ts: 19,
            resolved_ts: 20
        })
    );
    apply(&mut r, vec![initialized()]).unwrap();
    assert!(r.advance(30));
    assert!(!r.advance(25), "a lower resolved ts does not move the region");
    assert_eq!(r.resolved_ts(), 30);
    // A commit at or below the subscription's start ts is skipped, not refused.
    let rows = vec![prewrite("o", 5, "x", ""), commit("o", 5, 9)];
    assert_eq!(apply(&mut r, rows), Ok(vec![]));
    let rows = vec![prewrite("p", 28, "y", ""), commit("p", 28, 29)];
    assert!(matches!(apply(&mut r, rows), Err(RowError::BelowResolvedTs { commit_ts: 29, .. })));
    let rows = vec![prewrite("q", 31, "z", ""), commit("q", 31, 33)];
    assert_eq!(apply(&mut r, rows), Ok(vec![put("q", 31, 33, "z", "")]));
}

#[test]
fn rows_outside_the_region_are_dropped() {
    // §10 L51: "zz" and "0" lie outside [a, z).
    let mut r = region(0, 0);
    let rows = vec![
        initialized(),
        committed("zz", 1, 2, "x"),
        committed("0", 1, 2, "x"),
        committed("y", 1, 2, "y"),
    ];
    assert_eq!(apply(&mut r, rows), Ok(vec![put("y", 1, 2, "y", "")]));
    assert_eq!(r.out_of_span_rows(), 2);
}

#[test]
fn orphan_prewrites_are_collected() {
    // §11 item 19: a prewrite whose transaction the resolved ts has passed never gets a commit.
    let mut r = region(0, 0);
    let rows = vec![initialized(), prewrite("r", 5, "a", ""), prewrite("s", 9, "b", "")];
    apply(&mut r, rows).unwrap();
    assert_eq!(r.pending_prewrites(), 2);
    assert!(r.advance(9));
    assert_eq!(r.pending_prewrites(), 1, "start ts 5 < 9 is gone, 9 may still commit");
    assert!(r.advance(10));
    assert_eq!(r.pending_prewrites(), 0);
}

#[test]
fn resolved_ts_waits_for_the_scan() {
    let mut r = region(0, 7);
    assert!(!r.advance(8), "no resolved ts before INITIALIZED");
    assert_eq!(r.resolved_ts(), 7);
    apply(&mut r, vec![initialized()]).unwrap();
    assert!(r.advance(8));
}

#[test]
fn unknown_types_and_operations_are_errors() {
    let mut r = region(0, 0);
    let odd = row(RowKind::Unknown(42), RowOp::Put, "t", 1, 2, "", "");
    assert_eq!(apply(&mut r, vec![odd]), Err(RowError::UnknownKind(42)));
    let odd = row(RowKind::Committed, RowOp::Unknown(9), "t", 1, 2, "v", "");
    assert_eq!(
        apply(&mut r, vec![odd]),
        Err(RowError::UnknownOp { key: Bytes::from_static(b"t"), op: 9 })
    );
    let delete = row(RowKind::Committed, RowOp::Delete, "u", 1, 2, "", "gone");
    let expected = RowEvent {
        op: Op::Delete,
        key: Bytes::from_static(b"u"),
        value: Bytes::new(),
        old_value: Some(Bytes::from_static(b"gone")),
        start_ts: 1,
        commit_ts: 2,
    };
    assert_eq!(apply(&mut r, vec![delete]), Ok(vec![expected]));
}

#[test]
fn pipelined_dml_keeps_the_newest_generation() {
    let mut r = region(0, 0);
    let mut gen2 = prewrite("w", 3, "second flush", "");
    gen2.generation = 2;
    let mut gen1 = prewrite("w", 3, "first flush", "");
    gen1.generation = 1;
    // A generation > 0 does not match during the scan: the commit is cached.
    assert_eq!(apply(&mut r, vec![gen2, gen1, commit("w", 3, 4)]), Ok(vec![]));
    assert_eq!(apply(&mut r, vec![initialized()]), Ok(vec![put("w", 3, 4, "second flush", "")]));
}

/// Delivered rows pin none of the frame their bytes came in: they are copied into one buffer
/// of their own per batch (an unread row would otherwise keep its whole frame alive).
#[test]
fn delivered_rows_do_not_share_the_frame() {
    let frame = Bytes::from(b"bvaluebold!cvaluec".to_vec());
    let inside = |bytes: &Bytes| frame.as_ptr_range().contains(&bytes.as_ptr());
    let slice = |range: core::ops::Range<usize>| frame.slice(range);
    let row = |key, value, old| Row {
        key: slice(key),
        value: slice(value),
        old_value: slice(old),
        ..committed("", 5, 6, "")
    };
    let rows = vec![row(0..1, 1..7, 7..11), row(11..12, 12..18, 0..0)];
    let mut r = region(1, 1);
    let delivered = apply(&mut r, rows).unwrap();
    assert_eq!(delivered, [put("b", 5, 6, "valueb", "old!"), put("c", 5, 6, "valuec", "")]);
    for row in &delivered {
        assert!(!inside(&row.key) && !inside(&row.value), "{row:?} shares the frame");
        assert!(row.old_value.as_ref().is_none_or(|old| !inside(old)));
    }
}
