//! Scenario scripts for the range lock (reference §3.7 and §10 A/B), and the differential
//! property test against the model of [`crate::fuzzing`]; `partition` tests the partition model
//! the piece index is compared with.
//!
//! A script is one step per line, `command args -> expected outcome`:
//!
//! ```text
//! span a z start MAX            the lock's span and start ts (first line)
//! lock c g r1 v10 -> locked MAX  lock [c, g) for region 1 at version 10
//! unlock c g r1 v10 @5 -> ...    unlock, leaving ts 5 behind (omit @ts for the region's own)
//! retry t1 -> ...                lock again with the arguments that got ticket t1
//! cancel t1 -> true              give up ticket t1
//! init r1 -> ok                  mark region 1 initialized
//! advance r1 7 -> advanced       advance region 1 to ts 7
//! batch r1,r2 7 -> 2 advanced    advance a batch of regions
//! resolved -> 5                  the subscription's resolved ts
//! stats -> locked 1 slowest r1@5 fastest r1@5 holes [a,c)@9
//! stop -> stopped woke t1 drained
//! ```
//!
//! Keys are single letters (or any word), `-inf` and `+inf` are the unbounded ends, `MAX` is
//! `u64::MAX`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::collections::HashMap;

use kvfeed_span::{EncodedKey, Span};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::fuzzing::pieces as pieces_model;
use crate::fuzzing::{Case, Op, check as check_against_model};
use crate::{Advance, LockOutcome, RangeLock, Stats, UnlockError};

mod partition;

fn key(word: &str) -> EncodedKey {
    match word {
        "-inf" | "+inf" => EncodedKey::default(),
        _ => EncodedKey::from_encoded(word.as_bytes()),
    }
}

fn show_key(key: &EncodedKey, end: bool) -> String {
    match (key.is_empty(), end) {
        (true, false) => "-inf".into(),
        (true, true) => "+inf".into(),
        _ => String::from_utf8_lossy(key.as_bytes()).into_owned(),
    }
}

fn show_span(span: &Span) -> String {
    format!("[{},{})", show_key(span.start(), false), show_key(span.end(), true))
}

fn show_ts(ts: u64) -> String {
    if ts == u64::MAX { "MAX".into() } else { ts.to_string() }
}

fn parse_ts(word: &str) -> u64 {
    if word == "MAX" { u64::MAX } else { word.parse().expect("a ts") }
}

fn parse_region(word: &str) -> u64 {
    word.strip_prefix('r').and_then(|n| n.parse().ok()).expect("a region like r1")
}

fn parse_version(word: &str) -> u64 {
    word.strip_prefix('v').and_then(|n| n.parse().ok()).expect("a version like v1")
}

fn show_woken(out: &mut String, woken: &[crate::Ticket]) {
    if !woken.is_empty() {
        out.push_str(" woke");
        for t in woken {
            out.push_str(&format!(" t{}", t.0));
        }
    }
}

fn show_stats(stats: &Stats) -> String {
    let mut out = format!("locked {}", stats.locked);
    for (name, region) in [("slowest", stats.slowest), ("fastest", stats.fastest)] {
        if let Some(r) = region {
            out.push_str(&format!(" {name} r{}@{}", r.region_id, show_ts(r.resolved_ts)));
        }
    }
    if !stats.holes.is_empty() {
        out.push_str(" holes");
        for (span, ts) in &stats.holes {
            out.push_str(&format!(" {}@{}", show_span(span), show_ts(*ts)));
        }
    }
    out
}

/// Runs a script, asserting every step's outcome.
fn check(script: &str) {
    let mut lines = script.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let first: Vec<&str> = lines.next().expect("a span line").split_whitespace().collect();
    let ["span", start, end, "start", ts] = first[..] else {
        panic!("first line: span S E start TS")
    };
    let span = Span::new(key(start), key(end)).expect("a valid span");
    let mut lock = RangeLock::new(span, parse_ts(ts));
    let mut tickets: HashMap<u64, (Span, u64, u64)> = HashMap::new();
    for line in lines {
        let (command, expected) =
            line.split_once("->").unwrap_or_else(|| panic!("no `->` in {line}"));
        let words: Vec<&str> = command.split_whitespace().collect();
        let got = match words[..] {
            ["lock", s, e, region, version] => {
                let range = Span::new(key(s), key(e)).expect("a valid range");
                run_lock(
                    &mut lock,
                    &mut tickets,
                    range,
                    parse_region(region),
                    parse_version(version),
                )
            }
            ["retry", ticket] => {
                let n: u64 = ticket.trim_start_matches('t').parse().expect("a ticket like t1");
                let (range, region, version) = tickets.get(&n).cloned().expect("a known ticket");
                run_lock(&mut lock, &mut tickets, range, region, version)
            }
            ["cancel", ticket] => {
                let n: u64 = ticket.trim_start_matches('t').parse().expect("a ticket like t1");
                lock.cancel_wait(crate::Ticket(n)).to_string()
            }
            ["unlock", s, e, region, version, ref rest @ ..] => {
                let range = Span::new(key(s), key(e)).expect("a valid range");
                let ts = rest.first().map(|w| parse_ts(w.trim_start_matches('@')));
                match lock.unlock(&range, parse_region(region), parse_version(version), ts) {
                    Ok(u) => {
                        let mut out = format!("unlocked {}", show_ts(u.resolved_ts));
                        show_woken(&mut out, &u.woken);
                        if u.drained {
                            out.push_str(" drained");
                        }
                        out
                    }
                    Err(UnlockError::NotLocked) => "error not-locked".into(),
                    Err(UnlockError::WrongRegion { holder }) => {
                        format!("error wrong-region r{holder}")
                    }
                    Err(UnlockError::WrongVersion { locked }) => {
                        format!("error wrong-version v{locked}")
                    }
                    Err(UnlockError::WrongEnd { locked }) => {
                        format!("error wrong-end {}", show_key(&locked, true))
                    }
                }
            }
            ["init", region] => {
                if lock.mark_initialized(parse_region(region)) {
                    "ok".into()
                } else {
                    "not-locked".into()
                }
            }
            ["advance", region, ts] => match lock.advance(parse_region(region), parse_ts(ts)) {
                Advance::Advanced => "advanced".into(),
                Advance::NotHigher => "not-higher".into(),
                Advance::NotInitialized => "not-initialized".into(),
                Advance::NotLocked => "not-locked".into(),
            },
            ["batch", regions, ts] => {
                let ids: Vec<u64> = regions.split(',').map(parse_region).collect();
                format!("{} advanced", lock.advance_batch(ids, parse_ts(ts)))
            }
            ["resolved"] => show_ts(lock.resolved_ts()),
            ["len"] => lock.len().to_string(),
            ["stats"] => show_stats(&lock.stats()),
            ["stop"] => {
                let stopped = lock.stop();
                let mut out = String::from("stopped");
                show_woken(&mut out, &stopped.woken);
                if stopped.drained {
                    out.push_str(" drained");
                }
                out
            }
            _ => panic!("unknown step: {line}"),
        };
        assert_eq!(got, expected.trim(), "step `{command}`\nlock: {lock:?}");
        if let Err(broken) = lock.check_invariants() {
            panic!("after `{command}`: {broken}\n{lock:?}");
        }
    }
}

fn run_lock(
    lock: &mut RangeLock,
    tickets: &mut HashMap<u64, (Span, u64, u64)>,
    range: Span,
    region: u64,
    version: u64,
) -> String {
    match lock.lock(&range, region, version) {
        Ok(LockOutcome::Locked { checkpoint_ts }) => format!("locked {}", show_ts(checkpoint_ts)),
        Ok(LockOutcome::Wait(ticket)) => {
            tickets.insert(ticket.0, (range, region, version));
            format!("wait t{}", ticket.0)
        }
        Ok(LockOutcome::Stale { retry }) => {
            let mut out = String::from("stale");
            for span in &retry {
                out.push(' ');
                out.push_str(&show_span(span));
            }
            out
        }
        Ok(LockOutcome::Cancelled) => "cancelled".into(),
        Err(_) => "error out-of-span".into(),
    }
}

#[test]
fn lock_unlock_relock() {
    // §10 A1 and the third example of §3.7.
    check(
        "
        span a h start MAX
        lock a e r1 v1 -> locked MAX
        unlock a e r1 v1 @100 -> unlocked 100
        lock a e r1 v2 -> locked 100
        lock a e r1 v2 -> stale
        lock a h r1 v3 -> wait t1
        unlock a e r1 v2 @110 -> unlocked 110 woke t1
        retry t1 -> locked 110
        resolved -> 110
        ",
    );
}

#[test]
fn stale_retry_ranges() {
    // §10 A2: the worked examples of §3.7 with two locked ranges of different versions.
    check(
        "
        span a z start MAX
        lock c g r1 v10 -> locked MAX
        lock j n r2 v8 -> locked MAX
        lock c g r1 v10 -> stale
        lock c i r1 v9 -> stale [g,i)
        lock a z r1 v9 -> stale [a,c) [g,j) [n,z)
        lock a e r1 v9 -> stale [a,c)
        lock e h r1 v9 -> stale [g,h)
        lock e k r1 v9 -> stale [g,j)
        lock g j r3 v1 -> locked MAX
        unlock g j r3 v1 @2 -> unlocked 2
        unlock c g r1 v10 @5 -> unlocked 5
        unlock j n r2 v8 @8 -> unlocked 8
        resolved -> 2
        lock a z r1 v11 -> locked 2
        ",
    );
}

#[test]
fn region_id_exclusivity() {
    // §10 A3: one range per region id; a wait on the region's own old range outlives the
    // release of the overlapping range, and the checkpoint comes from the range only.
    check(
        "
        span a z start MAX
        lock c d r1 v10 -> locked MAX
        lock e f r1 v5 -> stale [e,f)
        lock e f r1 v10 -> stale [e,f)
        lock g h r2 v1 -> locked MAX
        lock g h r1 v11 -> wait t1
        unlock g h r2 v1 @20 -> unlocked 20
        lock g h r3 v1 -> locked 20
        unlock g h r3 v1 @20 -> unlocked 20
        unlock c d r1 v10 @11 -> unlocked 11 woke t1
        retry t1 -> locked 20
        ",
    );
}

#[test]
fn cancelled_wait() {
    // §10 A4: a waiter that gives up is not woken, and its ticket cannot be cancelled twice.
    check(
        "
        span a z start 5
        lock a m r1 v1 -> locked 5
        lock a z r2 v2 -> wait t1
        lock b c r3 v2 -> wait t2
        cancel t1 -> true
        cancel t1 -> false
        unlock a m r1 v1 -> unlocked 5 woke t2
        retry t2 -> locked 5
        ",
    );
}

#[test]
fn statistics() {
    // §10 A5: one hole before anything is locked; slowest and fastest over locked ranges;
    // holes come back after unlock.
    check(
        "
        span a z start 100
        stats -> locked 0 holes [a,z)@100
        lock a m r1 v1 -> locked 100
        lock m z r2 v1 -> locked 100
        stats -> locked 2 slowest r1@100 fastest r1@100
        init r1 -> ok
        init r2 -> ok
        batch r1,r2 101 -> 2 advanced
        stats -> locked 2 slowest r1@101 fastest r1@101
        advance r2 102 -> advanced
        stats -> locked 2 slowest r1@101 fastest r2@102
        unlock m z r2 v1 -> unlocked 102
        stats -> locked 1 slowest r1@101 fastest r1@101 holes [m,z)@102
        ",
    );
}

#[test]
fn resolved_ts_includes_unlocked_parts() {
    // §10 A6.
    check(
        "
        span a z start 100
        lock a e r1 v1 -> locked 100
        lock e m r2 v1 -> locked 100
        init r1 -> ok
        init r2 -> ok
        advance r1 101 -> advanced
        advance r2 102 -> advanced
        resolved -> 100
        lock m z r3 v1 -> locked 100
        init r3 -> ok
        advance r3 103 -> advanced
        resolved -> 101
        ",
    );
}

#[test]
fn range_ts_map_sequence_through_the_lock() {
    // §10 B8 expressed through the lock: setting a range's ts is locking it and unlocking it at
    // that ts; the min over a range is the checkpoint a lock of it gets.
    check(
        "
        span a z start MAX
        resolved -> MAX
        lock b e r1 v1 -> locked MAX
        unlock b e r1 v1 @100 -> unlocked 100
        resolved -> 100
        lock a b r2 v1 -> locked MAX
        unlock a b r2 v1 -> unlocked MAX
        lock d g r3 v1 -> locked 100
        unlock d g r3 v1 @80 -> unlocked 80
        resolved -> 80
        stats -> locked 0 holes [a,z)@80
        lock c f r4 v1 -> locked 80
        unlock c f r4 v1 @120 -> unlocked 120
        lock e f r5 v1 -> locked 120
        lock b c r6 v1 -> locked 100
        lock f g r7 v1 -> locked 80
        ",
    );
}

#[test]
fn unbounded_ends() {
    // The original compared raw bytes and broke on an empty (+inf) end; here it is infinity.
    check(
        "
        span -inf +inf start 10
        lock -inf c r1 v1 -> locked 10
        lock m +inf r2 v1 -> locked 10
        lock a +inf r3 v1 -> stale [c,m)
        lock c m r3 v1 -> locked 10
        unlock m z r2 v1 -> error wrong-end +inf
        init r2 -> ok
        advance r2 15 -> advanced
        unlock m +inf r2 v1 -> unlocked 15
        stats -> locked 2 slowest r1@10 fastest r1@10 holes [m,+inf)@15
        lock x +inf r4 v1 -> locked 15
        stats -> locked 3 slowest r1@10 fastest r4@15 holes [m,x)@15
        lock -inf +inf r5 v2 -> wait t1
        ",
    );
}

#[test]
fn unlock_arguments_are_checked() {
    // A mismatched unlock is a typed error and changes nothing.
    check(
        "
        span a z start 1
        lock c g r1 v10 -> locked 1
        unlock c g r2 v10 -> error wrong-region r1
        unlock c g r1 v9 -> error wrong-version v10
        unlock c h r1 v10 -> error wrong-end g
        unlock d g r1 v10 -> error not-locked
        unlock a c r1 v10 -> error not-locked
        unlock zz zzz r1 v10 -> error not-locked
        unlock 0 c r1 v10 -> error not-locked
        len -> 1
        unlock c g r1 v10 -> unlocked 1
        unlock c g r1 v10 -> error not-locked
        lock a zz r1 v1 -> error out-of-span
        ",
    );
}

#[test]
fn resolved_ts_waits_for_initialization_and_never_decreases() {
    check(
        "
        span a z start 50
        lock a z r1 v1 -> locked 50
        advance r1 60 -> not-initialized
        init r1 -> ok
        advance r1 60 -> advanced
        advance r1 55 -> not-higher
        advance r1 60 -> not-higher
        advance r9 70 -> not-locked
        init r9 -> not-locked
        batch r1,r9 70 -> 1 advanced
        resolved -> 70
        ",
    );
}

#[test]
fn stop_drains_exactly_once() {
    check(
        "
        span a z start 1
        lock a m r1 v1 -> locked 1
        lock m z r2 v1 -> locked 1
        lock a z r3 v2 -> wait t1
        stop -> stopped woke t1
        retry t1 -> cancelled
        lock a c r4 v9 -> cancelled
        unlock a m r1 v1 -> unlocked 1
        unlock m z r2 v1 -> unlocked 1 drained
        stop -> stopped
        ",
    );
    check(
        "
        span a z start 1
        stop -> stopped drained
        stop -> stopped
        lock a z r1 v1 -> cancelled
        ",
    );
}

#[test]
fn many_pieces_keep_the_minimum() {
    // Lock 1000 adjacent ranges, advance them out of order and check the minimum at each step.
    let span = Span::new(EncodedKey::default(), EncodedKey::default()).expect("full span");
    let mut lock = RangeLock::new(span, 1);
    let bound = |i: u32| EncodedKey::from_encoded(i.to_be_bytes());
    for i in 0..1000u32 {
        let start = if i == 0 { EncodedKey::default() } else { bound(i) };
        let end = if i == 999 { EncodedKey::default() } else { bound(i + 1) };
        let range = Span::new(start, end).expect("adjacent bounds");
        assert_eq!(
            lock.lock(&range, u64::from(i), 1),
            Ok(LockOutcome::Locked { checkpoint_ts: 1 })
        );
        assert!(lock.mark_initialized(u64::from(i)));
    }
    // Region i advances to 1000 + (i * 7919) % 1000; the minimum moves as the lowest catch up.
    let target = |i: u64| 1000 + (i * 7919) % 1000;
    for i in 0..1000u64 {
        assert_eq!(lock.advance(i, target(i)), Advance::Advanced);
        let expected = if i == 999 { (0..1000).map(target).min().unwrap_or(0) } else { 1 };
        assert_eq!(lock.resolved_ts(), expected);
    }
    lock.check_invariants().expect("invariants hold");
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let region = 0u8..4;
    prop_oneof![
        4 => (0u8..10, 0u8..10, region.clone(), 0u8..6)
            .prop_map(|(start, end, region, version)| Op::Lock { start, end, region, version }),
        3 => (any::<u8>(), proptest::option::of(0u8..20)).prop_map(|(n, ts)| Op::UnlockHeld { n, ts }),
        1 => (0u8..10, 0u8..10, region.clone(), 0u8..6)
            .prop_map(|(start, end, region, version)| Op::Unlock { start, end, region, version }),
        2 => (0u8..8).prop_map(|n| Op::Retry { n }),
        1 => (0u8..8).prop_map(|n| Op::Cancel { n }),
        2 => region.clone().prop_map(|region| Op::Initialize { region }),
        1 => region.clone().prop_map(|region| Op::Uninitialize { region }),
        3 => (proptest::collection::vec(region.clone(), 1..4), 0u8..30)
            .prop_map(|(regions, ts)| Op::Advance { regions, ts }),
        1 => region.clone().prop_map(|region| Op::TakeHandle { region }),
        2 => (any::<u8>(), 0u8..30).prop_map(|(n, ts)| Op::AdvanceHandle { n, ts }),
        1 => Just(Op::Stop),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 2000,
        rng_seed: RngSeed::Fixed(0x6b76_6665_6564),
        failure_persistence: None,
        ..Config::default()
    })]

    /// The lock and the model agree after every step of random operation sequences.
    #[test]
    fn agrees_with_the_model(
        bounded in any::<bool>(),
        start_ts in proptest::option::of(0u8..20),
        ops in proptest::collection::vec(op_strategy(), 0..60),
    ) {
        check_against_model(&Case { bounded, start_ts, ops });
    }
}

/// Keys of the piece index's model: four shapes, a few thousand of each.
fn piece_key() -> impl Strategy<Value = u16> {
    (0u16..4, 0u16..3000).prop_map(|(shape, n)| (shape << 14) | n)
}

fn piece_op() -> impl Strategy<Value = pieces_model::Op> {
    use pieces_model::Op;
    prop_oneof![
        4 => (piece_key(), any::<u32>()).prop_map(|(key, value)| Op::Insert { key, value }),
        2 => (piece_key(), any::<u8>()).prop_map(|(key, count)| Op::InsertRun { key, count }),
        2 => (piece_key(), proptest::option::of(piece_key()))
            .prop_map(|(start, end)| Op::RemoveInterior { start, end }),
        3 => (piece_key(), proptest::option::of(piece_key()), proptest::option::of(any::<u8>()))
            .prop_map(|(start, end, finger)| Op::Query { start, end, finger }),
        2 => (piece_key(), piece_key(), any::<u32>())
            .prop_map(|(start, end, value)| Op::InsertEnd { start, end, value }),
        2 => (piece_key(), proptest::option::of(any::<u8>()))
            .prop_map(|(key, finger)| Op::StartingAt { key, finger }),
    ]
}

proptest! {
    #![proptest_config(Config {
        cases: 300,
        rng_seed: RngSeed::Fixed(0x7069_6563_6573),
        failure_persistence: None,
        ..Config::default()
    })]

    /// The piece index and a plain `BTreeMap` partition agree after every step, with enough
    /// keys to split, merge and empty leaves.
    #[test]
    fn piece_index_agrees_with_a_btree_partition(
        bounds in proptest::option::of((piece_key(), piece_key())),
        ops in proptest::collection::vec(piece_op(), 0..120),
    ) {
        pieces_model::check(&pieces_model::Case { bounds, ops });
    }
}

/// A key beyond the span's end, whose bytes past the nodes' prefixes look like a present key's
/// (found by the `rangelock_pieces` fuzz target): not a piece start.
#[test]
fn a_key_beyond_the_span_starts_no_piece() {
    use pieces_model::Op;
    let ops = std::vec![
        Op::InsertRun { key: 56283, count: 219 },
        Op::StartingAt { key: 65529, finger: None }
    ];
    pieces_model::check(&pieces_model::Case { bounds: Some((56283, 56319)), ops });
}

/// A seeded xorshift generator: each call gives a number below its argument.
fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |bound| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    }
}

/// A tree three levels deep: thousands of keys in random and ascending order, then wide
/// removals that empty whole nodes and collapse the root, checked against the model at every step.
#[test]
fn a_deep_piece_index_agrees_with_a_btree_partition() {
    use pieces_model::Op;
    let mut random = xorshift(0x2545_f491_4f6c_dd1d);
    let mut next = move |bound: u16| random(u64::from(bound)) as u16;
    let mut ops = Vec::new();
    for round in 0..14u16 {
        ops.push(Op::InsertRun { key: round * 300, count: 255 });
        for _ in 0..60 {
            let key = next(4) << 14 | next(16_000);
            ops.push(Op::Insert { key, value: u32::from(key) });
        }
        ops.push(Op::Query { start: next(12_000), end: Some(12_000 + next(4_000)), finger: None });
        ops.push(Op::InsertEnd { start: next(8_000), end: 8_000 + next(8_000), value: 7 });
        ops.push(Op::StartingAt { key: next(16_000), finger: None });
        ops.push(Op::StartingAt { key: next(16_000), finger: Some(next(200) as u8) });
    }
    for _ in 0..12 {
        let start = next(4) << 14 | next(16_000);
        ops.push(Op::RemoveInterior { start, end: Some(start.saturating_add(next(3_000))) });
        ops.push(Op::Query { start: next(16_000), end: None, finger: None });
    }
    ops.push(Op::RemoveInterior { start: 0, end: None });
    ops.push(Op::InsertRun { key: 100, count: 200 });
    pieces_model::check(&pieces_model::Case { bounds: None, ops });
}

/// Unlocks find their ranges after the leaves those ranges were locked in have split, merged,
/// emptied and been reused (the region index's leaf hints are outdated): thousands of ranges
/// locked in random order, half unlocked, others locked over the gaps, all unlocked, each
/// result checked.
#[test]
fn unlocks_find_ranges_whose_leaves_moved() {
    let mut random = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut next = move |bound: usize| random(bound as u64) as usize;
    let key = |i: usize| EncodedKey::from_encoded(format!("k{i:06}"));
    let range = |i: usize| Span::new(key(2 * i), key(2 * i + 1)).unwrap();
    let wide = |i: usize| Span::new(key(2 * i + 1), key(2 * i + 2)).unwrap();
    let mut shuffled = |n: usize| {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, next(i + 1));
        }
        order
    };
    let n = 3_000;
    let mut lock = RangeLock::new(Span::full(), 10);
    for i in shuffled(n) {
        assert!(matches!(lock.lock(&range(i), i as u64, 1), Ok(LockOutcome::Locked { .. })));
    }
    lock.check_invariants().unwrap();
    let order = shuffled(n);
    let (gone, kept) = order.split_at(n / 2);
    for &i in gone {
        let unlocked = lock.unlock(&range(i), i as u64, 1, Some(20 + i as u64)).unwrap();
        assert_eq!(unlocked.resolved_ts, 20 + i as u64);
    }
    // The gaps between ranges, locked by new regions: more splits around the kept ranges.
    for i in shuffled(n - 1) {
        let region = (n + i) as u64;
        assert!(matches!(lock.lock(&wide(i), region, 1), Ok(LockOutcome::Locked { .. })));
    }
    lock.check_invariants().unwrap();
    for &i in kept {
        assert_eq!(
            lock.unlock(&range(i), i as u64, 2, None),
            Err(UnlockError::WrongVersion { locked: 1 })
        );
        assert!(lock.unlock(&range(i), i as u64, 1, None).is_ok());
    }
    for i in shuffled(n - 1) {
        assert!(lock.unlock(&wide(i), (n + i) as u64, 1, None).is_ok());
    }
    assert!(lock.is_empty());
    lock.check_invariants().unwrap();
}

/// A batch advance longer than its lookup pipeline, with unknown, repeated and uninitialized
/// regions, does what advancing each region in turn does (by id and by handle).
#[test]
fn batch_advances_agree_with_single_advances() {
    let key = |i: u64| EncodedKey::from_encoded(format!("k{i:04}"));
    let mut lock = RangeLock::new(Span::full(), 5);
    for i in 0..60 {
        let range = Span::new(key(i), key(i + 1)).unwrap();
        assert!(matches!(lock.lock(&range, i, 1), Ok(LockOutcome::Locked { .. })));
        if i % 7 != 3 {
            lock.mark_initialized(i);
        }
    }
    let ids: Vec<u64> = (0..90).map(|i| (i * 37) % 70).chain([4, 4, 9, 65, 66]).collect();
    let handles: Vec<_> = ids.iter().filter_map(|&id| lock.handle(id)).collect();
    for ts in [3, 5, 8, 8, 12] {
        let mut one_by_one = lock.clone();
        let expected = ids.iter().filter(|&&id| one_by_one.advance(id, ts) == Advance::Advanced);
        let expected = expected.count();
        let mut by_handle = lock.clone();
        assert_eq!(lock.advance_batch(ids.iter().copied(), ts), expected);
        assert_eq!(by_handle.advance_handles(handles.iter().copied(), ts), expected);
        for id in 0..70 {
            assert_eq!(lock.region(id), one_by_one.region(id));
            assert_eq!(by_handle.region(id), one_by_one.region(id));
        }
        assert_eq!(lock.resolved_ts(), one_by_one.resolved_ts());
        lock.check_invariants().unwrap();
    }
}

/// The memory breakdown accounts for what the lock holds: every key's bytes, a slot and an
/// owner per piece, a region index entry per region, and it grows with the ranges.
#[test]
fn the_memory_breakdown_counts_every_part() {
    // Keys longer than a handle holds: their bytes are counted apart.
    let key = |i: u64| EncodedKey::from_encoded(format!("key-{i:040}"));
    let build = |n: u64| {
        let mut lock = RangeLock::new(Span::full(), 5);
        for i in 0..n {
            let range = Span::new(key(i + 1), key(i + 2)).unwrap();
            assert!(matches!(lock.lock(&range, i, 1), Ok(LockOutcome::Locked { .. })));
        }
        lock
    };
    let (small, large) = (build(1_000).memory(), build(10_000).memory());
    // 10,000 ranges: a start key of 44 bytes each (plus the pieces before and after, and the
    // fences, which repeat a node's first key).
    const { assert!(EncodedKey::INLINE < 44) };
    assert!(large.key_bytes >= 10_000 * 44 && large.key_bytes < 10_000 * 44 * 11 / 10);
    assert!(large.key_handles >= 10_000 * core::mem::size_of::<EncodedKey>());
    assert!(large.slots >= 10_001 * 16 && large.owners >= 10_001 * 16);
    assert!(large.region_index >= 10_000 * 16 * 4 / 3);
    assert!(large.min_tree >= 10_001 * 8);
    assert!(large.piece_leaves >= 10_000 * 16);
    // (Tables and vectors grow by doubling: about tenfold, not exactly.)
    assert!(large.total() > 5 * small.total() && large.total() < 20 * small.total());
    let parts = [large.piece_leaves, large.piece_inner, large.key_handles, large.key_bytes];
    assert!(large.total() >= parts.iter().sum::<usize>() + large.slots + large.owners);
}
